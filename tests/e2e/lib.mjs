// Shared by the browser tests: Debian's Chromium through playwright-core, the built page served
// from dist/, and the reference data the page's numbers are checked against.

import { chromium } from 'playwright-core';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, mkdirSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, dirname } from 'node:path';
import { fileURLToPath } from 'node:url';
import { serve } from './server.mjs';

export const ROOT = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
export const FIXTURES = join(ROOT, 'tests', 'fixtures');
export const ARTIFACTS = join(ROOT, 'tests', 'e2e', 'artifacts');
export const TOL = 1e-4;

const BASE_FLAGS = [
  '--headless=new',
  '--no-sandbox',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
  '--disable-quic',
];

/**
 * Launches Chromium. With `webgpu`, WebGPU runs on its SwiftShader (CPU) adapter; without it,
 * `navigator.gpu.requestAdapter()` gives null and the page must fall back to the CPU. Service
 * workers are blocked unless `serviceWorkers` is 'allow': Playwright's routes do not see what a
 * service worker serves, and only the offline test needs one.
 */
export async function launch({ webgpu = true, serviceWorkers = 'block' } = {}) {
  const userDataDir = mkdtempSync(join(tmpdir(), 'patchbay-chromium-'));
  const args = [...BASE_FLAGS, ...(webgpu ? ['--enable-unsafe-webgpu'] : [])];
  return chromium.launchPersistentContext(userDataDir, {
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    args,
    ignoreDefaultArgs: ['--enable-unsafe-swiftshader'],
    viewport: { width: 1280, height: 720 },
    serviceWorkers,
  });
}

/** Serves dist/ on a free port. */
export function serveDist() {
  return serve(join(ROOT, 'dist'), 0);
}

/** For each page that `open` opened, a promise rejected by its first uncaught exception. */
const uncaught = new WeakMap();

/**
 * Opens the page and collects everything that should never happen: uncaught exceptions, and
 * console errors from the page or its workers.
 */
export async function open(context, url) {
  const page = await context.newPage();
  const problems = [];
  let threw;
  const crashed = new Promise((_, reject) => (threw = reject));
  crashed.catch(() => {}); // a test that never waits on it reads `problems` instead
  uncaught.set(page, crashed);
  page.on('pageerror', (e) => {
    problems.push(`uncaught: ${e.message}`);
    threw(new Error(`the page threw: ${e.message}`));
  });
  page.on('console', (m) => m.type() === 'error' && problems.push(`console: ${m.text()}`));
  page.on('worker', (w) => w.on('console', (m) => m.type() === 'error' && problems.push(`worker console: ${m.text()}`)));
  await page.goto(url);
  return { page, problems };
}

/**
 * Waits until the page has a prediction (the default prompt runs after the model loads). An
 * uncaught exception (a script that does not even parse, say) ends the wait at once, rather
 * than after `timeout`.
 */
export async function waitForPrediction(page, timeout = 600_000) {
  await Promise.race([
    page.waitForFunction(() => window.patchbay?.prediction || window.patchbay?.errors.length, null, {
      timeout,
      polling: 250,
    }),
    uncaught.get(page) ?? new Promise(() => {}),
  ]);
  const state = await page.evaluate(() => window.patchbay);
  if (!state.prediction) throw new Error(`the page reported: ${state.errors.join(' | ')}`);
  return state;
}

/** Reads a tensor from a safetensors file: { shape, values }. */
export function readTensor(file, key) {
  const bytes = readFileSync(file);
  const headerLen = Number(bytes.readBigUInt64LE(0));
  const header = JSON.parse(bytes.subarray(8, 8 + headerLen).toString('utf8'));
  const info = header[key];
  if (!info) throw new Error(`${file} has no ${key}`);
  const [start, end] = info.data_offsets;
  const data = bytes.subarray(8 + headerLen + start, 8 + headerLen + end);
  const values = new Float32Array(data.buffer.slice(data.byteOffset, data.byteOffset + data.length));
  return { shape: info.shape, values };
}

export function reference(model) {
  return {
    meta: JSON.parse(readFileSync(join(FIXTURES, 'reference', `${model}-forward.json`), 'utf8')),
    logits: (i) => readTensor(join(FIXTURES, 'reference', `${model}-forward.safetensors`), `p${i}.hf.logits`).values,
  };
}

export function maxAbsDiff(a, b) {
  if (a.length !== b.length) throw new Error(`lengths differ: ${a.length} vs ${b.length}`);
  let max = 0;
  for (let i = 0; i < a.length; i++) max = Math.max(max, Math.abs(a[i] - b[i]));
  return max;
}

export async function screenshot(page, name) {
  mkdirSync(ARTIFACTS, { recursive: true });
  await page.screenshot({ path: join(ARTIFACTS, `${name}.png`), fullPage: true });
}

/** The JSON `patchbay COMMAND SPEC --model MODEL --json --quiet` prints for `spec`. */
export function cliJson(command, spec, model) {
  const file = join(mkdtempSync(join(tmpdir(), `patchbay-${command}-`)), 'spec.json');
  writeFileSync(file, JSON.stringify(spec));
  return JSON.parse(execFileSync(join(ROOT, 'target', 'release', 'patchbay'), [command, file, '--model', model, '--json', '--quiet']));
}
