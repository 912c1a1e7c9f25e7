// The page on the CPU fallback against the native CLI on the same machine, on a GPT-2-small-shaped
// model (seeded, `patchbay init --shape gpt2-small --seed 0`, generated in a temp dir and deleted
// after). A benchmark, not a test: it prints a Markdown table and asserts nothing.
//   node bench/page-cpu.mjs [DIST] [runs] [shape]
// DIST is a built page (scripts/build-web.sh's dist/, the default), so two builds can be compared;
// shape is one of the GPT-2 family's (`gpt2-small`, the default, or `gpt2-medium`: 1.42 GB).
//
// In headless Chromium without WebGPU it times, inside the page: loading the model through the URL
// source (same origin, so no Cache Storage copy); a forward pass (the Predict button: the 15-token
// IOI prompt with BOS, last-position logits, top 10); and the IOI resid_pre sweep (the IOI preset,
// S2 corrupted by STR, normalized logit difference, resid_pre at each position, started with "Run
// anyway", which skips the "slow on the CPU" question wherever it would ask; until its heatmap is
// shown). The native figures are the release
// CLI's: load and sweep from `patchbay run --timings` (the sweep without load), the forward from
// `patchbay bench-forward` (median of 20), at 1 thread (the page's wasm has none) and 2. Memory: the renderer's peak resident set (VmHWM, the worker runs in it) and the
// worker's wasm memory after the load, against the weights file's size. The page runs twice: with
// one worker (`?workers=1`: load, forward, sweep, memory), and with the pool the page picks for
// this machine (web/worker-pool.js: the sweep, shared by its workers, whose results must be the
// single worker's byte for byte, and the renderer's resident set with every worker's model).

import { execFileSync, spawnSync } from 'node:child_process';
import { mkdtempSync, mkdirSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { launch, ROOT } from '../tests/e2e/lib.mjs';
import { serve } from '../tests/e2e/server.mjs';

const dist = resolve(process.argv[2] ?? join(ROOT, 'dist'));
const runs = Number(process.argv[3] ?? 3);
const shape = process.argv[4] ?? 'gpt2-small';
const bin = join(ROOT, 'target', 'release', 'patchbay');
const PROMPT = 'When Mary and John went to the store, John gave a drink to';

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const MB = (bytes) => (bytes / 1e6).toFixed(0);

/** Chromium's renderer processes started by this script: pids of descendants with --type=renderer. */
function renderers() {
  const children = new Map();
  for (const pid of readdirSync('/proc').filter((p) => /^\d+$/.test(p))) {
    try {
      const ppid = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' ')[1];
      children.set(ppid, [...(children.get(ppid) ?? []), pid]);
    } catch {
      // The process ended while we looked.
    }
  }
  const found = [];
  const walk = (pid) => {
    for (const child of children.get(pid) ?? []) {
      try {
        if (readFileSync(`/proc/${child}/cmdline`, 'utf8').includes('--type=renderer')) found.push(child);
      } catch {
        // Ended.
      }
      walk(child);
    }
  };
  walk(String(process.pid));
  return found;
}

/** A field of /proc/PID/status in bytes (VmRSS, VmHWM), the largest over the renderers. */
function rendererMemory(field) {
  let max = 0;
  for (const pid of renderers()) {
    try {
      const line = readFileSync(`/proc/${pid}/status`, 'utf8').split('\n').find((l) => l.startsWith(`${field}:`));
      max = Math.max(max, Number(line.split(/\s+/)[1]) * 1024);
    } catch {
      // Ended.
    }
  }
  return max;
}

/**
 * Clicks `button` in the page and resolves to the ms until `until` is done there: 'model' (the
 * model at `url` is loaded), 'prediction' (a new one is shown) or 'run' (a new experiment's
 * results are shown). Timed in the page, polling every 5 ms.
 */
function timeInPage(page, button, until, url = null) {
  return page.evaluate(
    async ([button, until, url]) => {
      const s = window.patchbay;
      const runs = s.runs;
      s.prediction = null;
      const done = {
        model: () => s.model?.source?.url === url,
        prediction: () => s.prediction,
        run: () => s.runs > runs && !s.running,
      }[until];
      const start = performance.now();
      document.querySelector(button).click();
      while (!done() && !s.errors.length) await new Promise((r) => setTimeout(r, 5));
      if (s.errors.length) throw new Error(s.errors.join(' | '));
      return performance.now() - start;
    },
    [button, until, url],
  );
}

async function page(server, modelUrl, workers = null) {
  const context = await launch({ webgpu: false });
  try {
    const page = await context.newPage();
    await page.goto(workers ? `${server.url}?workers=${workers}` : server.url);
    // The shipped model loads and runs its first experiment; wait until the page is idle.
    await page.waitForFunction(() => (window.patchbay?.results && !window.patchbay.running) || window.patchbay?.errors.length, null, { timeout: 600_000 });
    const backend = await page.evaluate(() => window.patchbay.backend.kind);
    if (backend !== 'cpu') throw new Error(`the page runs on ${backend}, not the CPU fallback`);
    const rssBefore = rendererMemory('VmRSS');

    await page.locator('input[name="source"][value="url"]').check();
    await page.locator('#model-url').fill(modelUrl);
    const load = await timeInPage(page, '#load', 'model', modelUrl);
    await page.waitForFunction(() => window.patchbay.prediction, null, { timeout: 600_000 });
    const peakRss = rendererMemory('VmHWM');
    // The helpers load their copies after the lead's.
    const pool = await page.evaluate(async () => {
      await window.patchbayPool.settled();
      return window.patchbayPool.size;
    });
    const wasmMemory = await page.workers()[0].evaluate(async () => {
      // The worker's module instance: init() again returns its exports, memory among them.
      const pkg = await import(new URL('../pkg/patchbay_web.js', self.location.href).href);
      return (await pkg.default()).memory.buffer.byteLength;
    });

    await page.locator('#preset').selectOption('ioi');
    await page.locator('#component').selectOption('resid_pre');
    await page.locator('#positions').selectOption('each');
    await page.waitForFunction(() => !window.patchbay.running);
    const clean = await page.locator('#clean').inputValue();
    if (clean !== PROMPT) throw new Error(`the IOI preset's prompt is ${clean}`);
    const forward = [];
    for (let i = 0; i <= 5; i++) {
      const ms = await timeInPage(page, '#run', 'prediction');
      if (i > 0) forward.push(ms); // The first is a warm-up, as bench-forward's.
    }
    const sweep = [];
    let results;
    for (let i = 0; i < runs; i++) {
      sweep.push(await timeInPage(page, '#run-anyway', 'run'));
      results = await page.evaluate(() => window.patchbay.results);
    }
    const rss = rendererMemory('VmRSS');
    return { load: load / 1000, forward: median(forward) / 1000, sweep: median(sweep) / 1000, rssBefore, peakRss, wasmMemory, results, pool, rss };
  } finally {
    await context.close();
  }
}

function native(model, specFile, threads) {
  const env = { ...process.env, RAYON_NUM_THREADS: String(threads) };
  const loads = [];
  const sweeps = [];
  let grid;
  for (let i = 0; i < runs; i++) {
    const out = spawnSync(bin, ['run', specFile, '--model', model, '--json', '--quiet', '--timings', '--backend', 'cpu'], { env, encoding: 'utf8', maxBuffer: 1 << 28 });
    if (out.status !== 0) throw new Error(out.stderr);
    grid = JSON.parse(out.stdout).grid;
    // `--timings` prints {"load_s", "run_s"} on stderr.
    const timings = JSON.parse(out.stderr.trim().split('\n').pop());
    loads.push(timings.load_s);
    sweeps.push(timings.run_s);
  }
  const bench = JSON.parse(execFileSync(bin, ['bench-forward', '--model', model, '--prompt', PROMPT, '--prepend-bos', '--backend', 'cpu', '--iters', '20'], { env, encoding: 'utf8' }));
  return { load: median(loads), forward: bench.median_ms / 1000, sweep: median(sweeps), grid };
}

const flat = (g) => (Array.isArray(g) ? g.flatMap(flat) : [g]);

const work = mkdtempSync(join(tmpdir(), 'patchbay-page-cpu-'));
try {
  const model = join(work, 'model');
  execFileSync(bin, ['init', '--shape', shape, '--seed', '0', '--out', model], { stdio: 'ignore' });
  const weights = statSync(join(model, 'model.safetensors')).size;
  // The page's files and the model under one origin: the model URL is same-origin, as a deployment's would be.
  const site = join(work, 'site');
  mkdirSync(site);
  for (const name of readdirSync(dist)) symlinkSync(join(dist, name), join(site, name));
  symlinkSync(model, join(site, shape));
  const server = await serve(site, 0);
  const web = await page(server, `${server.url}${shape}/`, 1);
  const pooled = await page(server, `${server.url}${shape}/`);
  await server.close();

  const specFile = join(work, 'spec.json');
  writeFileSync(specFile, JSON.stringify(web.results.spec));
  const one = native(model, specFile, 1);
  const two = native(model, specFile, 2);
  const x = flat(web.results.grid);
  const diff = Math.max(...flat(one.grid).map((v, i) => Math.abs(v - x[i])));

  console.log(`dist: ${dist}; wasm ${(statSync(join(dist, 'pkg', 'patchbay_web_bg.wasm')).size / 1e6).toFixed(2)} MB; model: ${shape} (seeded), ${MB(weights)} MB weights; page vs native grid max abs diff ${diff.toExponential(1)}`);
  console.log(`page: one load, median of 5 forwards and of ${runs} sweeps; native: medians of ${runs} loads and sweeps, of 20 forwards\n`);
  console.log('| measurement | page, CPU fallback s | native 1 thread s | native 2 threads s | page speed / native 1 thread | page speed / native 2 threads |');
  console.log('|---|---|---|---|---|---|');
  const rows = [
    [web, 'load', 'load the model'],
    [web, 'forward', 'one forward pass (last-position logits)'],
    [web, 'sweep', 'IOI resid_pre sweep (layer × position), 1 worker'],
    [pooled, 'sweep', `IOI resid_pre sweep, ${pooled.pool} workers (the page's pool here)`],
  ];
  for (const [from, key, name] of rows) {
    const pct = (n) => `${((100 * n[key]) / from[key]).toFixed(0)}%`;
    console.log(`| ${name} | ${from[key].toFixed(3)} | ${one[key].toFixed(3)} | ${two[key].toFixed(3)} | ${pct(one)} | ${pct(two)} |`);
  }
  const same = JSON.stringify(pooled.results) === JSON.stringify(web.results);
  if (!same) process.exitCode = 1;
  console.log(`\n${pooled.pool} workers vs 1: results ${same ? 'identical, byte for byte' : 'DIFFER'}; renderer RSS with every worker's model ${MB(pooled.rss)} MB (1 worker: ${MB(web.rss)} MB)`);
  console.log(`\npage memory loading ${MB(weights)} MB of weights: renderer peak RSS ${MB(web.peakRss)} MB (${(web.peakRss / weights).toFixed(2)}× the file; ${MB(web.rssBefore)} MB before the load), wasm memory after it ${MB(web.wasmMemory)} MB (${(web.wasmMemory / weights).toFixed(2)}×)`);
} finally {
  rmSync(work, { recursive: true, force: true });
}
