// The editor is lossless and the page a thin view of the core: a link of any valid spec runs
// exactly the spec in the link (byte for byte, its canonical text), what the form cannot show
// is shown read-only with a way to clear it, a model the page cannot load is named and never
// replaced by another, damaged results in a link leave the experiment usable, and the page's
// warnings, views, exports and layout come from the core's own facts. Screenshots of the new
// states go to tests/e2e/artifacts/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { inflateRawSync } from 'node:zlib';
import { copyFileSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, serveDist, open, screenshot, FIXTURES } from './lib.mjs';
import { serve } from './server.mjs';
import { random, randomSpec } from './specs.mjs';

const ROUND_TRIPS = 200;

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

/** Waits for the page's first experiment (it runs one on load). */
async function ready(page) {
  await page.waitForFunction(() => window.patchbay?.results || window.patchbay?.errors.length, null, { timeout: 600_000 });
  const state = await page.evaluate(() => window.patchbay);
  assert.deepEqual(state.errors, [], 'no errors on load');
  return state;
}

const canonical = (page, text) => page.evaluate((t) => window.patchbayApi.canonical(t), text);
const linkOf = (page, spec) => page.evaluate((s) => window.patchbayApi.link(s), spec);

/** Opens a link in the page (as pasting it into the tab does) and waits until it is open. */
async function openInPlace(page, link) {
  const before = await page.evaluate(() => window.patchbay.links);
  await page.evaluate((hash) => (location.hash = hash), new URL(link).hash);
  await page.waitForFunction((n) => window.patchbay.links > n, before);
}

/** Opens the canonical spec `spec`'s link, waits for its run to start, and returns the spec text run. */
async function runsOf(page, spec) {
  const started = await page.evaluate(() => window.patchbay.started);
  await openInPlace(page, await linkOf(page, spec));
  await page.waitForFunction((n) => window.patchbay.started > n || window.patchbay.errors.length, started);
  return page.evaluate(() => window.patchbay.lastStarted);
}

/** Stops the run in progress, if any, and waits for the page to be idle. */
async function settle(page) {
  await page.evaluate(() => window.patchbay.running && document.querySelector('#cancel').click());
  await page.waitForFunction(() => !window.patchbay.running);
}

/** The spec text a share link carries. */
function specOfLink(link) {
  const packed = new URLSearchParams(new URL(link).hash.slice(1)).get('spec');
  return inflateRawSync(Buffer.from(packed.slice(3), 'base64url')).toString('utf8');
}

test(`links of ${ROUND_TRIPS} random valid specs run byte-identical to the link`, async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    await ready(page);
    const r = random(20261201);
    const texts = Array.from({ length: ROUND_TRIPS }, () => randomSpec(r));
    const started = Date.now();
    // In the page, for speed: each spec's canonical text, its link opened in place (as pasting it
    // does), the spec text the worker hands the core once the run starts, then Cancel.
    const trips = await page.evaluate(async (texts) => {
      const s = window.patchbay;
      const until = (f) =>
        new Promise((resolve) => {
          const tick = () => (f() ? resolve() : setTimeout(tick, 1));
          tick();
        });
      const same = (a, b) => JSON.stringify(JSON.parse(a)) === JSON.stringify(JSON.parse(b));
      const out = [];
      for (const text of texts) {
        const spec = await window.patchbayApi.canonical(text);
        const link = await window.patchbayApi.link(spec);
        const n = s.started;
        location.hash = new URL(link).hash;
        await until(() => s.started > n || s.errors.length);
        const ran = s.started > n ? s.lastStarted : null;
        document.querySelector('#cancel').click();
        await until(() => !s.running);
        // The editor's check of the spec it holds: valid on the loaded model too (the core
        // prepares it, a dataset generated, without error).
        await until(() => s.checked?.spec && same(s.checked.spec, spec));
        const invalid = s.checked.ok ? null : s.checked.error;
        out.push({ spec, invalid, ran, errors: s.errors.splice(0) });
      }
      return out;
    }, texts);
    const seconds = (Date.now() - started) / 1000;
    const kinds = new Set();
    let mixed = 0;
    trips.forEach(({ spec, invalid, ran, errors }, i) => {
      assert.equal(invalid, null, `spec ${i} is valid: ${spec}`);
      assert.equal(ran, spec, `spec ${i} ran as written`);
      // Every valid spec runs in the page, attribution patching included.
      assert.deepEqual(errors, [], `spec ${i}: ${spec}`);
      const s = JSON.parse(spec);
      kinds.add(`${s.target.component}/${s.corruption.method}/${s.dataset?.task ?? 'pairs'}`);
      if (s.dataset?.template === 'all' || s.prompts.length === 3) mixed += 1;
    });
    console.log(`${trips.length} random specs opened from links and run as written in ${seconds.toFixed(1)} s (${kinds.size} component/corruption/dataset kinds, ${mixed} with prompts of different lengths)`);
    assert.equal(trips.length, ROUND_TRIPS);
    assert.ok(kinds.size >= 40, `varied specs: ${kinds.size} kinds`);
    assert.ok(mixed >= 10, `prompts of different lengths: ${mixed} specs`);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('what the form cannot show is kept, shown read-only and clearable; unloadable models are named, never replaced', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    const { results: first } = await ready(page);
    const base = first.spec;
    const variant = async (change) => canonical(page, JSON.stringify(change(structuredClone(base))));

    // Heads [1] of z: kept, named in the heads menu, and run as written.
    const heads = await variant((s) => ((s.target = { component: 'z', positions: 'all', heads: [1] }), s));
    assert.equal(await runsOf(page, heads), heads);
    await page.waitForFunction(() => !window.patchbay.running && window.patchbay.results?.spec.target.heads?.[0] === 1);
    assert.match(await page.locator('#heads option:checked').textContent(), /Heads 1 together \(from the link\)/);
    assert.deepEqual((await page.evaluate(() => window.patchbay.results)).axes.map((a) => a.name), ['layer']);

    // Path patching into receiver heads' values at a position.
    const path = await variant((s) => ((s.target = { component: 'path', receivers: { heads: [[1, 0], [1, 1]], input: 'v', positions: [10] } }), s));
    assert.equal(await runsOf(page, path), path);
    await page.waitForFunction(() => !window.patchbay.running);
    assert.equal(await page.locator('#receivers-row').isVisible(), true);
    assert.match(await page.locator('#receivers option:checked').textContent(), /The v of heads 1\.0, 1\.1 at positions 10 \(from the link\)/);
    assert.equal(await page.locator('#positions-row').isVisible(), false);

    // GN with σ texts, a detection value the menu lacks, answer sets under logit difference,
    // roles, per-prompt normalization of one prompt, statistics settings: each kept, shown,
    // clearable; attribution has its own control.
    const many = await variant((s) => {
      s.corruption = { method: 'gn', positions: [], scale: 3, samples: 2, sigma_texts: [' Mary', ' John'] };
      s.detect = { sigma: 1.5 };
      s.prompts[0].answer_set = [' Mary', ' Anna'];
      s.prompts[0].counter_set = [' John', ' Tom'];
      s.prompts[0].roles = ['first', 'second'];
      s.metric.normalize = 'per_prompt';
      s.stats = { level: 0.9, seed: 7 };
      s.attribution = true;
      return s;
    });
    assert.equal(await runsOf(page, many), many);
    await settle(page);
    await page.evaluate(() => (window.patchbay.errors = []));
    assert.match(await page.locator('#kept-corruption').textContent(), /σ is measured on the token embeddings of “ Mary”, “ John” \(from the link\)/);
    assert.match(await page.locator('#detect option:checked').textContent(), /over 1\.5σ from the mean \(from the link\)/);
    assert.match(await page.locator('#kept-answers').textContent(), /R = {2}Mary\| Anna and R′ = {2}John\| Tom \(from the link\): only probability difference/);
    assert.equal(await page.locator('#attribution').isChecked(), true);
    assert.match(await page.locator('#kept-prompts').textContent(), /Roles name the tokens of the prompt \(from the link\) \(the first: first second\)/);
    assert.match(await page.locator('#kept-method').textContent(), /Over the prompts: Mean of each prompt's normalized effect \(from the link\); with one prompt it changes nothing/);
    assert.equal(await page.locator('#normalize-row').isVisible(), false);
    assert.match(await page.locator('#kept-detect').textContent(), /statistics are drawn with a 0\.9 bootstrap interval, \d+ resamples, \d+ random sign flips, seed 7 \(from the link\)/);
    // With no tokens chosen, GN noises the tokens STR changes: S2, marked on the chips.
    await page.waitForSelector('#gn-tokens button.auto');
    assert.deepEqual(await page.locator('#gn-tokens button.auto').evaluateAll((b) => b.map((x) => x.title)), ['position 10']);
    await screenshot(page, 'step6-kept');
    await page.locator('#kept-corruption button').click();
    await page.locator('#attribution').uncheck();
    await page.locator('#kept-answers button').click();
    await page.locator('#kept-prompts button').click();
    await page.locator('#kept-method button').click();
    await page.locator('#kept-detect button').click();
    const cleared = JSON.parse(await page.evaluate(() => window.patchbayApi.editor()));
    assert.equal(cleared.corruption.sigma_texts, undefined);
    assert.equal(cleared.attribution, false);
    assert.equal(cleared.prompts[0].answer_set, undefined);
    assert.equal(cleared.prompts[0].roles, undefined);
    assert.equal(cleared.metric.normalize, undefined);
    assert.equal(cleared.stats, undefined);
    assert.deepEqual(cleared.detect, { sigma: 1.5 }, 'the detection value stays until another is chosen');

    // Sharing after an edit carries the editor's experiment, not the last run's.
    await page.locator('#metric').selectOption('kl');
    await page.locator('#share').click();
    await page.waitForFunction(() => document.querySelector('#share-url').value.startsWith('http'));
    const shared = JSON.parse(specOfLink(await page.locator('#share-url').inputValue()));
    assert.equal(shared.metric.kind, 'kl');
    assert.equal(shared.corruption.method, 'gn');

    // Models the page cannot load are named, and nothing runs on another model.
    for (const model of [{ hub: 'EleutherAI/gpt-neo-125m' }, { embedded: 'gpt2-xl' }]) {
      const spec = await variant((s) => ((s.model = model), s));
      const before = await page.evaluate(() => window.patchbay.started);
      await openInPlace(page, await linkOf(page, spec));
      const name = Object.values(model)[0];
      assert.match(await page.locator('#link-status').textContent(), new RegExp(`runs on ${name}.*which this page cannot load, so nothing has run`));
      assert.match(await page.locator('#kept-model').textContent(), new RegExp(`names the model ${name}`));
      await page.locator('#run-experiment').click();
      await page.waitForFunction(() => document.querySelector('#run-error').textContent.length > 0);
      assert.match(await page.locator('#run-error').textContent(), new RegExp(`names ${name}.*which is not loaded`));
      assert.equal(await page.evaluate(() => window.patchbay.started), before, 'nothing ran');
      await page.evaluate(() => (window.patchbay.errors = []));
    }
    await screenshot(page, 'step6-unloadable-model');
    assert.deepEqual(problems, []);

    // A link whose results are damaged still opens its experiment, on a loaded model.
    const good = await canonical(page, JSON.stringify(base));
    const url = `${await linkOf(page, good)}&results=v1.AAAA`;
    const fresh = await context.newPage();
    await fresh.goto(url);
    await fresh.waitForFunction(() => window.patchbay?.runs > 0 && !window.patchbay.running, null, { timeout: 120_000 });
    assert.match(await fresh.locator('#link-error').textContent(), /damaged.*opens without them/);
    assert.equal(await fresh.locator('#run-experiment').isEnabled(), true);
    assert.equal(await fresh.evaluate(() => window.patchbay.lastStarted), good);
    await fresh.close();
  } finally {
    await context.close();
  }
});

test('a 1,000-prompt dataset warns before a long CPU run; a dataset\'s head opens its patterns; hover follows the run; the export writes its prompts', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    await ready(page);
    assert.equal(await page.locator('#backend').textContent(), 'Running on the CPU (burn flex, pure Rust)');
    assert.match(await page.locator('#model-status').textContent(), /\(shipped with the app\)/);

    // The CPU warning counts the generated prompts: 1,000 of them, each position and head, read
    // by KL divergence (the whole distribution): about a minute on this model's CPU fallback.
    await page.locator('#dataset-task').selectOption('ioi');
    await page.locator('#dataset-n').fill('1000');
    await page.locator('#positions').selectOption('each');
    const metric = await page.locator('#metric').inputValue();
    await page.locator('#metric').selectOption('kl');
    // With several prompts the editor offers how they are combined, and every IOI template.
    assert.equal(await page.locator('#normalize-row').isVisible(), true);
    assert.equal(await page.locator('#dataset-template').inputValue(), '0');
    assert.match(await page.locator('#dataset-template option[value="all"]').textContent(), /All templates/);
    const started = await page.evaluate(() => window.patchbay.started);
    await page.locator('#run-experiment').click();
    await page.waitForSelector('#cpu-confirm:not([hidden])');
    const size = await page.evaluate(() => window.patchbay.size);
    assert.equal(size.prompts, 1000);
    assert.ok(size.slow_on_cpu && size.cpu_seconds > size.warning_seconds, JSON.stringify(size));
    assert.ok(size.cpu_seconds < 200, 'the work the sweep plans, not every patch as a full pass (8 min)');
    assert.match(await page.locator('#cpu-confirm-text').textContent(), /patches on each of 1,000 prompts .* on the CPU: about [\d.]+ (s|min) on one worker/);
    assert.equal(await page.evaluate(() => window.patchbay.started), started, 'it asks first');
    await screenshot(page, 'step6-cpu-warning');
    // With the logit difference (two logits per row) and 100 prompts it is a second or so,
    // and runs without asking.
    await page.locator('#metric').selectOption(metric);
    await page.locator('#dataset-n').fill('100');
    assert.equal((await page.evaluate((spec) => window.patchbayPool.call('size', { spec }), await page.evaluate(() => window.patchbayApi.editor()))).slow_on_cpu, false);

    // A small dataset runs; clicking one of its heads opens the head's attention patterns.
    await page.locator('#dataset-n').fill('4');
    await page.locator('#positions').selectOption('all');
    const runs = await page.evaluate(() => window.patchbay.runs);
    await page.locator('#run-experiment').click();
    await page.waitForFunction((n) => window.patchbay.runs > n && !window.patchbay.running, runs, { timeout: 120_000 });
    assert.equal((await page.evaluate(() => window.patchbay.results)).prompts.length, 4);
    await page.locator('#heatmap').focus();
    await page.waitForFunction(() => /head 0\.0/.test(document.querySelector('#hover-text').textContent));
    const hovered = await page.locator('#hover-text').textContent();
    assert.match(hovered, /Across the 4 prompts: sd/);
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('#detail-body canvas').length === 3 || window.patchbay.errors.length, null, { timeout: 120_000 });
    assert.deepEqual(await page.evaluate(() => window.patchbay.errors), []);
    assert.match(await page.locator('#detail-title').textContent(), /Attention pattern of head 0\.0/);

    // The TransformerLens script of the prepared spec: the four generated prompts written out,
    // and a plain word that TransformerLens cannot name this model.
    const download = page.waitForEvent('download');
    await page.locator('[data-export="python"]').click();
    const script = readFileSync(await (await download).path(), 'utf8');
    const clean = script.split('\n').find((l) => l.startsWith('clean = tokens('));
    assert.equal((clean.match(/"When /g) ?? []).length, 4, clean);
    assert.match(script, /MODEL_DIR = /);
    assert.match(await page.locator('#export-status').textContent(), /cannot load this model by name\. This experiment ran on patchbay-ioi/);

    // A new run resets the text under the pointer; hovering again describes the new grid.
    await page.locator('#component').selectOption('mlp_out');
    const again = await page.evaluate(() => window.patchbay.runs);
    await page.locator('#run-experiment').click();
    await page.waitForFunction((n) => window.patchbay.runs > n && !window.patchbay.running, again, { timeout: 120_000 });
    assert.notEqual(await page.locator('#hover-text').textContent(), hovered);
    assert.doesNotMatch(await page.locator('#hover-text').textContent(), /head 0\.0/);
    await page.locator('#heatmap').focus();
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction(() => /MLP output/.test(document.querySelector('#hover-text').textContent));
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('patterns by position are sliced along the query position; the Run button, the heatmap and both compared maps show together', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    await ready(page);
    // At 1280x720, on load: Run and the heatmap in view together, nothing scrolled.
    const inView = async (selector) => {
      const box = await page.locator(selector).boundingBox();
      return box && box.y >= 0 && box.y + Math.min(box.height, 40) <= 720;
    };
    assert.equal(await page.evaluate(() => window.scrollY), 0);
    assert.ok(await inView('#run-experiment'), 'Run in view');
    assert.ok(await inView('#heatmap'), 'heatmap in view');
    await screenshot(page, 'step6-first-view');

    await page.locator('#component').selectOption('pattern');
    await page.locator('#positions').selectOption('each');
    const runs = await page.evaluate(() => window.patchbay.runs);
    await page.locator('#run-experiment').click();
    await page.waitForFunction((n) => window.patchbay.runs > n && !window.patchbay.running, runs, { timeout: 120_000 });
    const results = await page.evaluate(() => window.patchbay.results);
    assert.deepEqual(results.axes.map((a) => a.name), ['layer', 'head_index', 'dest_pos']);
    assert.equal(await page.locator('#slice-label').textContent(), 'Query position');
    assert.equal(await page.locator('#slice option').count(), results.axes[2].labels.length);
    assert.deepEqual(await page.evaluate(() => window.patchbay.heatmap.axes), ['layer', 'head_index']);

    // Compare: the two maps side by side, their difference beside or below.
    await page.locator('#preset').selectOption('ioi');
    await page.locator('#compare-kind').selectOption('direction');
    await page.locator('#compare-run').click();
    await page.waitForFunction(() => window.patchbay.comparison || window.patchbay.errors.length, null, { timeout: 120_000 });
    const [a, b] = await Promise.all(['#compare-a', '#compare-b'].map((id) => page.locator(`figure:has(${id})`).boundingBox()));
    assert.ok(Math.abs(a.y - b.y) < 2 && b.x > a.x + a.width, `side by side: ${JSON.stringify([a, b])}`);
    await page.locator('#compare-panel').scrollIntoViewIfNeeded();
    await screenshot(page, 'step6-compare');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('a failed URL load keeps the previous model; a folder without tokenizer files loads with the app\'s', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-notok-'));
  for (const f of ['config.json', 'model.safetensors']) copyFileSync(join(FIXTURES, 'models', 'tiny', f), join(dir, f));
  const other = await serve(dir, 0, { cors: true });
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    await ready(page);
    await page.locator('input[name="source"][value="url"]').check();
    await page.locator('#model-url').fill(`${other.url}nowhere/`);
    await page.locator('#load').click();
    await page.waitForFunction(() => document.querySelector('#model-error').textContent.length > 0);
    assert.match(await page.locator('#model-error').textContent(), /nowhere\/config\.json answered 404/);
    assert.match(await page.locator('#model-status').textContent(), /previous model, patchbay-ioi .* is still loaded/);
    assert.equal(await page.locator('#run-experiment').isEnabled(), true);
    const runs = await page.evaluate(() => window.patchbay.runs);
    await page.locator('#run-experiment').click();
    await page.waitForFunction((n) => window.patchbay.runs > n && !window.patchbay.running, runs, { timeout: 120_000 });
    assert.deepEqual((await page.evaluate(() => window.patchbay.results)).spec.model, { embedded: 'patchbay-ioi' });

    await page.evaluate(() => (window.patchbay.errors = []));
    await page.locator('#model-url').fill(other.url);
    await page.locator('#load').click();
    await page.waitForFunction(() => /tokenizer from the app/.test(document.querySelector('#model-status').textContent) || window.patchbay.errors.length);
    assert.equal((await page.evaluate(() => window.patchbay.model)).n_layer, 3);
    assert.deepEqual(await page.evaluate(() => window.patchbay.errors), []);
    assert.deepEqual(problems.filter((p) => !/404/.test(p)), []);
  } finally {
    await context.close();
    await other.close();
  }
});
