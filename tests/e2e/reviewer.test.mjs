// Results a reviewer accepts (Step 7), in the page on the CPU fallback: a 40-prompt IOI dataset
// over every template detects the shipped model's heads 0.0, 1.0 and 1.1 by significance after
// Holm's correction and has a role axis per position; the grey-out toggle greys exactly the
// cells the results' p-values say are not significant; the sensitivity panel shows how stable
// each detected set is across seeds; a link made after a run carries a digest of its grid and
// its rerun says "reproduced", a tampered one "differs", a damaged one is named and the
// experiment still runs; and a link opened on another model than it names says so before
// anything runs. Screenshots go to tests/e2e/artifacts/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { launch, serveDist, open, screenshot } from './lib.mjs';

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

const CPU = 'the CPU (burn flex, pure Rust)';

/** Waits for the page's first experiment (it runs one on load). */
async function ready(page) {
  await page.waitForFunction(() => window.patchbay?.results || window.patchbay?.errors.length, null, { timeout: 600_000 });
  const state = await page.evaluate(() => window.patchbay);
  assert.deepEqual(state.errors, [], 'no errors on load');
  return state;
}

/** Opens a link in the page (as pasting it into the tab does) and waits until it is open. */
async function openInPlace(page, link) {
  const before = await page.evaluate(() => window.patchbay.links);
  await page.evaluate((hash) => (location.hash = hash), new URL(link).hash);
  await page.waitForFunction((n) => window.patchbay.links > n, before);
}

/** Waits for the run after `runs` runs to finish. */
async function ran(page, runs) {
  await page.waitForFunction((n) => (window.patchbay.runs > n && !window.patchbay.running) || window.patchbay.errors.length, runs, { timeout: 600_000 });
  const state = await page.evaluate(() => window.patchbay);
  assert.deepEqual(state.errors, []);
  return state;
}

/** A link's fragment parameter, unpacked. */
function part(link, name) {
  const packed = new URLSearchParams(new URL(link).hash.slice(1)).get(name);
  return packed === null ? null : inflateRawSync(Buffer.from(packed.slice(3), 'base64url')).toString('utf8');
}

/** The link with its fragment parameter `name` set to `text`, packed as share.js packs it. */
function withPart(link, name, text) {
  const url = new URL(link);
  const params = new URLSearchParams(url.hash.slice(1));
  params.set(name, `v1.${deflateRawSync(Buffer.from(text, 'utf8')).toString('base64url')}`);
  url.hash = params.toString();
  return url.href;
}

/** The pixel at the centre of drawn cell `i` of the results heatmap. */
function pixel(page, i) {
  return page.evaluate((i) => {
    const { cells, width } = window.patchbay.heatmap;
    const canvas = document.querySelector('#heatmap');
    const scale = canvas.width / width;
    const [x, y, w, h] = cells[i];
    return [...canvas.getContext('2d').getImageData(Math.round((x + w / 2) * scale), Math.round((y + h / 2) * scale), 1, 1).data];
  }, i);
}

const flat = (grid) => grid.flat(Infinity);

/** Presses Run, and Run anyway if the core's estimate asks first on the CPU. */
async function pressRun(page) {
  await page.locator('#run-experiment').click();
  await page.waitForFunction(() => window.patchbay.running || !document.querySelector('#cpu-confirm').hidden || window.patchbay.errors.length);
  if (await page.locator('#cpu-confirm').isVisible()) await page.locator('#run-anyway').click();
}

test('40 IOI prompts over every template: the known heads significant after Holm, a role axis, and greying what is not significant', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    await ready(page);
    const spec = await page.evaluate(() =>
      window.patchbayApi.canonical(
        JSON.stringify({
          version: 1,
          model: { embedded: 'patchbay-ioi' },
          prompts: [],
          dataset: { task: 'ioi', n: 40, seed: 2, names: 's2', template: 'all' },
          corruption: { method: 'str' },
          metric: { kind: 'logit_diff', normalized: true },
          target: { component: 'z', positions: 'all', heads: 'each' },
          detect: { significant: { alpha: 0.01, correction: 'holm', min_effect: 0.2 } },
        }),
      ),
    );
    let runs = await page.evaluate(() => window.patchbay.runs);
    let started = Date.now();
    await openInPlace(page, await page.evaluate((s) => window.patchbayApi.link(s), spec));
    let state = await ran(page, runs);
    const headSweep = (Date.now() - started) / 1000;
    const r = state.results;
    assert.equal(state.lastStarted, spec, 'the link ran as written');
    assert.equal(r.prompts.length, 40);
    assert.ok(new Set(r.prompts.map((p) => p.tokens.length)).size > 3, 'templates of several lengths');
    const heads = r.detected.map((d) => d.index.join('.')).sort();
    assert.deepEqual(heads, ['0.0', '1.0', '1.1']);
    const holm = flat(r.stats.p_holm);
    console.log(`Holm p-values of the heads: ${holm.map((p) => p.toExponential(2)).join(', ')}`);
    for (const d of r.detected) assert.ok(holm[d.cell] < 0.01, `head ${d.index.join('.')}: Holm p ${holm[d.cell]}`);
    assert.match(await page.locator('#detected h3').textContent(), /significant at α = 0\.01 after Holm's correction, with an effect of at least 0\.2 \(3\)/);
    // The menu does not offer this rule: it is shown read-only, from the link.
    assert.match(await page.locator('#detect option:checked').textContent(), /significant at α = 0\.01 .*\(from the link\)/);

    // Per position, the heads' grid has a role axis (the templates' lengths differ). Its 150
    // cells' Monte Carlo p-values (9999 sign flips, 40 prompts) are at least 1e-4, so after
    // Holm's correction none reaches 0.01: the menu's significance rule, at 0.05, reads it.
    assert.deepEqual(
      await page.locator('#detect option').allTextContents(),
      ['over 2σ from the mean (the paper)', 'with an effect of at least 0.2', "significant at α = 0.05 after Holm's correction (datasets)", "significant at α = 0.01 after Holm's correction, with an effect of at least 0.2 (from the link)"],
    );
    await page.locator('#detect').selectOption('significant');
    runs = await page.evaluate(() => window.patchbay.runs);
    await page.locator('#positions').selectOption('each');
    started = Date.now();
    await pressRun(page);
    state = await ran(page, runs);
    const perRole = (Date.now() - started) / 1000;
    const axes = state.results.axes.map((a) => a.name);
    assert.deepEqual(axes, ['layer', 'role', 'head_index']);
    const roles = state.results.axes[1].labels;
    for (const role of ['IO', 'S1', 'S1+1', 'S2', 'END']) assert.ok(roles.includes(role), `role ${role} in ${roles}`);
    assert.equal(await page.locator('#slice-label').textContent(), 'Role');
    // The panel of the end, where the heads' effects are read.
    const end = roles.indexOf('END');
    await page.locator('#slice').selectOption(String(end));
    await page.waitForFunction((n) => window.patchbay.heatmap.full[0] === n * 2, end);
    const roleHolm = flat(state.results.stats.p_holm);
    assert.deepEqual(state.results.spec.detect, { significant: { alpha: 0.05, correction: 'holm', min_effect: 0 } });
    // Greying: exactly the drawn cells whose Holm p-value (the spec's rule) is over 0.05,
    // on the panel shown.
    assert.equal(await page.locator('#grey-row').isVisible(), true, 'a dataset grid offers the toggle');
    assert.match(await page.locator('#grey-label').textContent(), /not significant at α = 0\.05 after Holm's correction/);
    const before = await page.evaluate(() => window.patchbay.heatmap);
    assert.deepEqual(before.greyed, [], 'nothing greyed until asked');
    const colours = await Promise.all(before.cells.map((_, i) => pixel(page, i)));
    await page.locator('#grey-out').check();
    await page.waitForFunction(() => window.patchbay.heatmap.greyed.length > 0);
    const after = await page.evaluate(() => window.patchbay.heatmap);
    const expected = after.full.map((cell, i) => [i, roleHolm[cell]]).filter(([, p]) => p === null || p > 0.05).map(([i]) => i);
    assert.ok(expected.length > 0 && expected.length < after.full.length, `some cells but not all are greyed: ${expected}`);
    assert.deepEqual(after.greyed, expected);
    for (let i = 0; i < after.cells.length; i++) {
      const now = await pixel(page, i);
      if (expected.includes(i)) assert.notDeepEqual(now, colours[i], `cell ${i} is greyed`);
      else assert.deepEqual(now, colours[i], `cell ${i} is not`);
    }
    const significant = roleHolm.filter((p) => p !== null && p <= 0.05).length;
    assert.match(await page.locator('#grey-summary').textContent(), new RegExp(`^${significant} of ${roleHolm.length} cells are significant at α = 0\\.05`));
    await screenshot(page, 'step7-greyed');
    await page.locator('#grey-out').uncheck();
    await page.waitForFunction(() => window.patchbay.heatmap.greyed.length === 0);

    console.log(`40 prompts over every template on the CPU: heads ${headSweep.toFixed(1)} s, heads per role (${roles.length} roles) ${perRole.toFixed(1)} s`);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('the sensitivity panel shows how stable each detected set is across seeds', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    await ready(page);
    await page.locator('#dataset-task').selectOption('ioi');
    await page.locator('#dataset-n').fill('8');
    await page.locator('#detect').selectOption('threshold');
    await page.locator('input[name="sens-metric"][value="prob"]').uncheck();
    await page.locator('#sens-seeds').fill('0, 1, 2');
    await page.locator('#sensitivity-run').click();
    await page.waitForFunction(() => window.patchbay.sensitivity || window.patchbay.errors.length, null, { timeout: 600_000 });
    assert.deepEqual(await page.evaluate(() => window.patchbay.errors), []);
    const sens = await page.evaluate(() => window.patchbay.sensitivity);
    assert.equal(sens.cases.length, 6, 'STR and GN × 3 seeds');
    assert.equal(sens.stability.length, 2);
    const rows = page.locator('#stability tr');
    assert.equal(await rows.count(), 1 + sens.stability.length);
    for (const [i, s] of sens.stability.entries()) {
      const [setting, agreement, components] = await rows.nth(i + 1).locator('th, td').allTextContents();
      assert.equal(setting, s.setting);
      assert.deepEqual(s.seeds, [0, 1, 2]);
      // The numbers of result.stability, as the page writes them (three significant digits).
      assert.ok(agreement.startsWith('Seeds 0, 1, 2: '), agreement);
      assert.ok(agreement.includes(`Jaccard similarity ${s.jaccard_mean.toPrecision(3)} on average`), `${agreement} vs ${s.jaccard_mean}`);
      assert.ok(agreement.includes(`${s.jaccard_min.toPrecision(3)} at the least`), `${agreement} vs ${s.jaccard_min}`);
      const named = s.components.map((f) => {
        const name = f.index.map((k, a) => sens.axes[a].labels[k]).join('.');
        return `${name} (${Math.round(f.fraction * 3)} of 3 seeds)`;
      });
      assert.equal(components, named.length ? named.join(', ') : 'none under any seed');
      // Each component's fraction is the share of the setting's seeds whose case detects it.
      for (const f of s.components) {
        const found = s.cases.filter((c) => sens.cases[c].detected.includes(f.cell)).length;
        assert.equal(f.fraction, found / 3);
      }
    }
    await page.locator('#stability').scrollIntoViewIfNeeded();
    await screenshot(page, 'step7-stability');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('a link made after a run says whether its rerun reproduced; tampered or damaged digests are named', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    const { results: first } = await ready(page);
    await page.locator('#share').click();
    await page.waitForFunction(() => document.querySelector('#share-url').value.startsWith('http'));
    const link = await page.locator('#share-url').inputValue();
    assert.match(await page.locator('#share-length').textContent(), /digest of the grid computed on the CPU/);
    const digest = JSON.parse(part(link, 'digest'));
    assert.deepEqual(digest.shape, [first.axes[0].labels.length, first.axes[1].labels.length]);
    assert.equal(digest.backend, CPU);
    const values = new Float32Array(new Uint8Array(Buffer.from(digest.values, 'base64')).buffer);
    assert.deepEqual([...values], flat(first.grid).map(Math.fround), 'the digest is the grid, as f32');

    // Reopened in a fresh tab: the shipped model loads, the experiment runs and reproduces.
    const rerun = async (url) => {
      const fresh = await context.newPage();
      const errors = [];
      fresh.on('pageerror', (e) => errors.push(e.message));
      await fresh.goto(url);
      await fresh.waitForFunction(() => window.patchbay?.runs > 0 && !window.patchbay.running, null, { timeout: 120_000 });
      assert.deepEqual(errors, []);
      return fresh;
    };
    let fresh = await rerun(link);
    assert.equal(await fresh.evaluate(() => window.patchbay.lastStarted), part(link, 'spec'), 'the link ran as written');
    const reproduced = await fresh.locator('#reproduction').textContent();
    assert.equal(reproduced, `Reproduced: every cell within 1e-5 of the link (on ${CPU}, as the link was).`);
    assert.equal((await fresh.evaluate(() => window.patchbay.reproduction)).differing, 0);
    await screenshot(fresh, 'step7-reproduced');
    await fresh.close();

    // One value of the digest altered: the rerun differs there, and names the cell.
    const tampered = new Float32Array(values);
    tampered[3] += 0.25;
    const bad = { ...digest, values: Buffer.from(tampered.buffer).toString('base64'), backend: 'WebGPU on a test adapter' };
    fresh = await rerun(withPart(link, 'digest', JSON.stringify(bad)));
    const differs = await fresh.locator('#reproduction').textContent();
    assert.match(differs, new RegExp(`^Differs at 1 of ${values.length} cells \\(largest 2\\.50e-1, at the output of head 1\\.1 at every position\\) \\(on ${CPU.replace(/[()]/g, '\\$&')}; the link's grid came from WebGPU on a test adapter\\)\\.$`));
    assert.equal((await fresh.evaluate(() => window.patchbay.reproduction)).largest_cell, 3);
    await screenshot(fresh, 'step7-differs');
    await fresh.close();

    // A link with the results too: shown at once; Run reproduces them.
    await page.locator('#share-results').check();
    await page.waitForFunction((l) => document.querySelector('#share-url').value !== l, link);
    const withResults = await page.locator('#share-url').inputValue();
    fresh = await context.newPage();
    await fresh.goto(withResults);
    await fresh.waitForFunction(() => window.patchbay?.results && !document.querySelector('#run-experiment').disabled, null, { timeout: 120_000 });
    assert.equal(await fresh.evaluate(() => window.patchbay.runs), 0, 'results that come with a link are shown, not rerun');
    assert.match(await fresh.locator('#reproduction').textContent(), /carries a digest of its grid \(6 cells, computed on the CPU/);
    await pressRun(fresh);
    await fresh.waitForFunction(() => window.patchbay.reproduction || window.patchbay.errors.length, null, { timeout: 120_000 });
    assert.match(await fresh.locator('#reproduction').textContent(), /^Reproduced: every cell within 1e-5/);
    await fresh.close();

    // A damaged digest, or one whose values do not decode: named, and the experiment still runs.
    for (const [damaged, message] of [
      [`${link.replace(/&digest=[^&]*/, '')}&digest=v1.AAAA`, /grid digest cannot be read \(This link is damaged.*runs without the check/],
      [withPart(link, 'digest', JSON.stringify({ ...digest, values: 'not base64!' })), /grid digest cannot be read \(the link's grid digest is not base64.*runs without the check/],
    ]) {
      fresh = await rerun(damaged);
      assert.match(await fresh.locator('#link-error').textContent(), message);
      assert.equal(await fresh.evaluate(() => window.patchbay.runs), 1, 'the experiment ran');
      assert.equal(await fresh.locator('#reproduction').isVisible(), false);
      assert.equal(await fresh.locator('#run-experiment').isEnabled(), true);
      await fresh.close();
    }
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('a link opened on another model than it names says so, and runs nothing on it by itself', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    const { results: first } = await ready(page);
    const loaded = 'patchbay-ioi \\(a model that ships with the app\\)';
    const started = await page.evaluate(() => window.patchbay.started);
    // A model the page cannot load: a Hub model outside the GPT-2 family.
    const unloadable = JSON.stringify({ ...first.spec, model: { hub: 'EleutherAI/gpt-neo-125m' } });
    await openInPlace(page, await page.evaluate((s) => window.patchbayApi.link(s), unloadable));
    assert.match(
      await page.locator('#link-status').textContent(),
      new RegExp(`^This link was made on EleutherAI/gpt-neo-125m \\(Hugging Face Hub\\); the page has ${loaded} loaded\\. .*so nothing has run`),
    );
    // A model it can load from a URL: said before Load; loading another one instead runs nothing.
    const url = 'http://127.0.0.1:9/a-model/';
    const elsewhere = JSON.stringify({ ...first.spec, model: { url } });
    await openInPlace(page, await page.evaluate((s) => window.patchbayApi.link(s), elsewhere));
    assert.match(await page.locator('#link-status').textContent(), new RegExp(`^This link was made on ${url}; the page has ${loaded} loaded\\. This link loads its model from a URL`));
    await page.locator('input[name="source"][value="fixture"]').check();
    await page.locator('#load').click();
    await page.waitForFunction(() => /nothing has run/.test(document.querySelector('#link-status').textContent) && !document.querySelector('#load').disabled);
    assert.match(await page.locator('#link-status').textContent(), new RegExp(`^This link was made on ${url}; the page has ${loaded} loaded, so nothing has run\\. Press Run`));
    await page.waitForTimeout(500);
    assert.equal(await page.evaluate(() => window.patchbay.started), started, 'nothing ran');
    await screenshot(page, 'step7-other-model');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
