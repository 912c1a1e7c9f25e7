// The experiment page: presets give the CLI's numbers (WebGPU and CPU fallback), share links
// reopen the exact experiment, the compare view shows both maps, their difference and rank
// correlation, every bad input is explained next to its control, hostile text stays text,
// Cancel leaves a usable page, and the layout holds on a phone. Screenshots of the main states
// are saved in tests/e2e/artifacts/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, serveDist, open, screenshot, ROOT } from './lib.mjs';

const PRESETS = ['ioi', 'factual', 'greater', 'induction'];
const MODEL = join(ROOT, 'dist', 'models', 'patchbay-ioi');

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

/** Waits for the page's first experiment (it runs one on load) or an error. */
async function ready(page) {
  await page.waitForFunction(() => window.patchbay?.results || window.patchbay?.errors.length, null, { timeout: 600_000 });
  const state = await page.evaluate(() => window.patchbay);
  assert.deepEqual(state.errors, [], 'no errors on load');
  return state;
}

/** Clicks Run and waits for new results. */
async function run(page) {
  const before = await page.evaluate(() => window.patchbay.runs);
  await page.locator('#run-experiment').click();
  await page.waitForFunction((n) => window.patchbay.runs > n && !window.patchbay.running, before, { timeout: 600_000 });
  await page.waitForFunction(() => !document.querySelector('#results').hidden);
  return page.evaluate(() => window.patchbay.results);
}

function cli(spec) {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-spec-'));
  const file = join(dir, 'spec.json');
  writeFileSync(file, JSON.stringify(spec));
  return JSON.parse(execFileSync(join(ROOT, 'target', 'release', 'patchbay'), ['run', file, '--model', MODEL, '--json', '--quiet']));
}

const flat = (g) => (Array.isArray(g) ? g.flatMap(flat) : [g]);
function maxDiff(a, b) {
  const x = flat(a);
  const y = flat(b);
  assert.equal(x.length, y.length);
  return Math.max(0, ...x.map((v, i) => Math.abs(v - y[i])));
}

for (const webgpu of [true, false]) {
  test(`every preset gives the CLI's numbers within 1e-5 (${webgpu ? 'WebGPU' : 'CPU fallback'})`, async () => {
    const context = await launch({ webgpu });
    try {
      const { page, problems } = await open(context, server.url);
      const state = await ready(page);
      assert.equal(state.backend.kind, webgpu ? 'wgpu' : 'cpu');
      // The first run on WebGPU compiles the GPU kernels as a stage of its own, and only it does.
      const stages = (s) => s.map((x) => x.stage);
      const compiling = 'compiling GPU kernels (the first run only)';
      assert.deepEqual(stages(state.stages).slice(0, 3), ['preparing the prompts', ...(webgpu ? [compiling] : []), 'clean and corrupted runs']);
      if (webgpu) console.log(`WebGPU first run: ${state.stages.map((x) => `${x.stage} at ${x.at} ms`).join(', ')}`);
      for (const preset of PRESETS) {
        await page.locator('#preset').selectOption(preset);
        const results = await run(page);
        const reference = cli(results.spec);
        const grid = maxDiff(results.grid, reference.grid);
        const raw = maxDiff(results.raw_grid, reference.raw_grid);
        // Normalizing divides by M_clean - M_corrupted; below 1 that amplifies rounding, so the
        // bar scales with it (the raw values are held to 1e-5 as they are).
        const span = Math.abs(reference.clean_metric - reference.corrupted_metric);
        const bar = 1e-5 * Math.max(1, results.normalized ? 1 / span : 1);
        console.log(`${webgpu ? 'WebGPU' : 'CPU'} ${preset}: page vs CLI max abs diff ${grid.toExponential(2)} (bar ${bar.toExponential(1)}), raw ${raw.toExponential(2)}`);
        assert.ok(grid <= bar && raw <= 1e-5, `${preset}: ${grid} / ${raw}`);
        assert.deepEqual(results.axes, reference.axes);
        assert.ok(!stages(await page.evaluate(() => window.patchbay.stages)).includes(compiling), `${preset} compiled nothing`);
        if (preset === 'ioi' && webgpu) await screenshot(page, 'step3-heatmap');
      }
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  });
}

test('attribution patching runs in the page beside the exact grid, equal to the CLI\'s, with their rank correlation', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    await ready(page);
    await page.locator('#preset').selectOption('ioi');
    await page.locator('#component').selectOption('z');
    await page.locator('#positions').selectOption('all');
    assert.equal(await page.locator('#attribution-row').isVisible(), true);
    await page.locator('#attribution').check();
    const results = await run(page);
    assert.equal(results.spec.attribution, true);
    const reference = cli(results.spec);
    const diff = maxDiff(results.attribution.grid, reference.attribution.grid);
    console.log(`attribution patching: page (CPU) vs CLI max abs diff ${diff.toExponential(2)}, Spearman ${reference.attribution.spearman}`);
    assert.ok(diff <= 1e-4, `attribution grid: ${diff}`);
    assert.ok(maxDiff(results.grid, reference.grid) <= 1e-5);
    const line = await page.locator('#results-attribution').textContent();
    assert.match(line, new RegExp(`Spearman's ρ = ${reference.attribution.spearman.toFixed(3)}; they differ most at `));
    await page.locator('#view').selectOption('attribution');
    const box = await page.locator('#heatmap').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.waitForFunction(() => /= .*\. Attribution patching estimates that patching/.test(document.querySelector('#hover-text').textContent));
    // Path patching has no attribution: the control goes away.
    await page.locator('#attribution').uncheck();
    await page.locator('#component').selectOption('path');
    assert.equal(await page.locator('#attribution-row').isVisible(), false);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('a share link reopens every control and the same grid in a fresh browser; results can ride along', async () => {
  const context = await launch({ webgpu: false });
  let link;
  let withResults;
  let original;
  let controls;
  const readControls = (page) =>
    page.evaluate(() =>
      Object.fromEntries(
        ['#clean', '#corrupted', '#answer', '#counter', '#metric', '#normalized', '#direction', '#component', '#positions',
          '#position-list', '#heads', '#window', '#gn-scale', '#gn-samples', '#seed', '#bos']
          .map((id) => {
            const e = document.querySelector(id);
            return [id, e.type === 'checkbox' ? e.checked : e.value];
          })
          .concat([
            ['corruption', document.querySelector('input[name="corruption"]:checked').value],
            ['gn', [...document.querySelectorAll('#gn-tokens [aria-pressed="true"]')].map((b) => b.title)],
          ]),
      ),
    );
  try {
    const { page } = await open(context, server.url);
    await ready(page);
    // A non-default experiment: GN on the names, KL, noising, attention outputs per position.
    await page.locator('input[name="corruption"][value="gn"]').check();
    await page.waitForSelector('#gn-tokens button');
    for (const p of [2, 4]) await page.locator(`#gn-tokens button[title="position ${p}"]`).click();
    await page.locator('#gn-samples').fill('4');
    await page.locator('#seed').fill('7');
    await page.locator('#metric').selectOption('kl');
    await page.locator('#direction').selectOption('noising');
    await page.locator('#component').selectOption('attn_out');
    original = await run(page);
    assert.equal(original.spec.corruption.method, 'gn');
    controls = await readControls(page);
    await page.locator('#share').click();
    await page.waitForFunction(() => document.querySelector('#share-url').value.startsWith('http'));
    link = await page.locator('#share-url').inputValue();
    assert.match(await page.locator('#share-length').textContent(), new RegExp(`${link.length.toLocaleString('en')} characters`));
    await page.locator('#share-results').check();
    await page.waitForFunction((l) => document.querySelector('#share-url').value !== l, link);
    withResults = await page.locator('#share-url').inputValue();
    assert.ok(withResults.length > link.length);
  } finally {
    await context.close();
  }

  const fresh = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(fresh, link);
    const state = await ready(page);
    assert.deepEqual(await readControls(page), controls);
    assert.deepEqual(state.results.grid, original.grid, 'identical grid');
    assert.deepEqual(state.results.spec, original.spec);
    assert.deepEqual(problems, []);
  } finally {
    await fresh.close();
  }

  const reader = await launch({ webgpu: false });
  try {
    const { page } = await open(reader, withResults);
    await page.waitForFunction(() => window.patchbay?.results);
    const state = await page.evaluate(() => window.patchbay);
    assert.equal(state.runs, 0, 'shown without running');
    assert.deepEqual(state.results.grid, original.grid);
    assert.match(await page.locator('#results-source').textContent(), /came with the link/);
  } finally {
    await reader.close();
  }
});

test('the compare view shows both maps on one scale, their difference and the rank correlation', async () => {
  const context = await launch({ webgpu: true });
  try {
    const { page, problems } = await open(context, server.url);
    await ready(page);
    await page.locator('#compare-kind').selectOption('corruption');
    await page.locator('#compare-run').click();
    await page.waitForFunction(() => window.patchbay.comparison || window.patchbay.errors.length, null, { timeout: 600_000 });
    const { a, b, cmp } = await page.evaluate(() => window.patchbay.comparison);
    assert.equal(a.spec.corruption.method, 'str');
    assert.equal(b.spec.corruption.method, 'gn');
    for (const id of ['#compare-a', '#compare-b', '#compare-diff']) {
      const size = await page.locator(id).evaluate((c) => [c.width, c.height]);
      assert.ok(size[0] > 100 && size[1] > 50, `${id} drawn`);
    }
    // The shown correlation is Spearman's rho of the two grids.
    const rank = (v) => {
      const order = v.map((x, i) => [x, i]).sort((p, q) => p[0] - q[0]);
      const r = new Array(v.length);
      for (let i = 0; i < order.length; ) {
        let j = i;
        while (j + 1 < order.length && order[j + 1][0] === order[i][0]) j++;
        for (let k = i; k <= j; k++) r[order[k][1]] = (i + j) / 2;
        i = j + 1;
      }
      return r;
    };
    const [x, y] = [rank(flat(a.grid)), rank(flat(b.grid))];
    const mean = (v) => v.reduce((s, t) => s + t, 0) / v.length;
    const [mx, my] = [mean(x), mean(y)];
    const cov = x.reduce((s, t, i) => s + (t - mx) * (y[i] - my), 0);
    const rho = cov / Math.sqrt(x.reduce((s, t) => s + (t - mx) ** 2, 0) * y.reduce((s, t) => s + (t - my) ** 2, 0));
    assert.ok(Math.abs(rho - cmp.spearman) < 1e-9, `${rho} vs ${cmp.spearman}`);
    assert.match(await page.locator('#rank-correlation').textContent(), new RegExp(`Spearman\\) between the two grids: ${cmp.spearman.toFixed(3)}`));
    assert.ok(maxDiff(cmp.difference, flat(a.grid).map((v, i) => v - flat(b.grid)[i])) < 1e-12);
    assert.equal(await page.locator('#top-a li').count(), 5);
    assert.equal(await page.locator('#top-b li').count(), 5);
    await screenshot(page, 'step3-compare');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('every bad input of Step 2 is explained next to its control, without console errors', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    await ready(page);
    const cases = [
      ['#corrupted', 'When Mary and John went to the store, Colosseum gave a drink to', '#corrupted-error', /same number of tokens.*15.*18/],
      ['#answer', ' Eiffel', '#answer-error', /must be a single token.*3 tokens/],
      ['#counter', ' Mary', '#counter_answer-error', /same token/],
      ['#clean', '', '#prompt-error', /the prompt is empty/],
      ['#clean', 'word '.repeat(70), '#prompt-error', /72 tokens but the model's context holds 64/],
    ];
    for (const [field, value, slot, expected] of cases) {
      await page.locator('#preset').selectOption('ioi');
      await page.waitForFunction(() => !document.querySelector('#corrupted-error').textContent);
      await page.locator(field).fill(value);
      await page.waitForFunction((s) => document.querySelector(s).textContent.length > 0, slot);
      assert.match(await page.locator(slot).textContent(), expected, field);
      assert.equal(await page.locator(slot).isVisible(), true);
      if (field === '#corrupted') await screenshot(page, 'step3-error');
    }
    await page.locator('#preset').selectOption('ioi');
    await page.locator('#component').selectOption('mlp_out');
    await page.locator('#window').selectOption('5');
    await page.waitForFunction(() => document.querySelector('#window-error').textContent.length > 0);
    assert.match(await page.locator('#window-error').textContent(), /window of 5 layers is wider than the model's 3 layers/);
    await page.locator('#window').selectOption('0');
    await page.locator('#positions').selectOption('these');
    await page.locator('#position-list').fill('2, 99');
    await page.waitForFunction(() => document.querySelector('#target-error').textContent.length > 0);
    assert.match(await page.locator('#target-error').textContent(), /position 99 is out of range/);
    await page.locator('#component').selectOption('z');
    await page.locator('#positions').selectOption('all');
    await page.locator('#heads').selectOption('all');
    await page.waitForFunction(() => !document.querySelector('#target-error').textContent);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }

  // Malformed and future-version links say why they cannot open.
  const raw = async (obj) => {
    const bytes = new TextEncoder().encode(JSON.stringify(obj));
    const stream = new Blob([bytes]).stream().pipeThrough(new CompressionStream('deflate-raw'));
    const out = Buffer.from(await new Response(stream).arrayBuffer()).toString('base64url');
    return `${server.url}#spec=v1.${out}`;
  };
  for (const [url, expected] of [
    [await raw({ version: 9, model: { embedded: 'patchbay-ioi' } }), /spec version 9 is not supported/],
    [await raw({ version: 1, colour: 'red' }), /cannot be opened/],
    [`${server.url}#spec=v1.AAAA`, /damaged/],
    [`${server.url}#spec=v7.xyz`, /newer or unknown Patchbay/],
  ]) {
    const ctx = await launch({ webgpu: false });
    try {
      const { page } = await open(ctx, url);
      await page.waitForFunction(() => document.querySelector('#link-error').textContent.length > 0);
      assert.match(await page.locator('#link-error').textContent(), expected);
      assert.equal(await page.locator('#editor').isVisible(), true, 'never a blank page');
    } finally {
      await ctx.close();
    }
  }
});

test('hostile prompts and links render as text and run nothing; the page sets a CSP', async () => {
  const payloads = [
    '<img src=x onerror="window.__xss=1">',
    '<script>window.__xss=2</script>',
    'javascript:window.__xss=3',
    '"><svg onload="window.__xss=4">',
  ];
  const spec = {
    version: 1,
    model: { embedded: 'patchbay-ioi' },
    prompts: [{ clean: payloads.join(' '), corrupted: payloads.join(' ').replace('x', 'y'), answer: ' Mary', counter_answer: ' John' }],
    corruption: { method: 'str' },
    metric: { kind: 'logit_diff', normalized: true },
    direction: 'denoising',
    target: { component: 'resid_pre', positions: 'each' },
  };
  const bytes = new TextEncoder().encode(JSON.stringify(spec));
  const packed = Buffer.from(await new Response(new Blob([bytes]).stream().pipeThrough(new CompressionStream('deflate-raw'))).arrayBuffer()).toString('base64url');
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, `${server.url}#spec=v1.${packed}`);
    await page.waitForFunction(() => window.patchbay?.results || window.patchbay?.errors.length, null, { timeout: 600_000 });
    const csp = await page.locator('meta[http-equiv="Content-Security-Policy"]').getAttribute('content');
    assert.match(csp, /script-src 'self' 'wasm-unsafe-eval'/);
    assert.equal(await page.locator('#clean').inputValue(), payloads.join(' '));
    await page.waitForFunction(() => document.querySelectorAll('#clean-tokens li').length > 0);
    const chips = (await page.locator('#clean-tokens li').allTextContents()).join('');
    assert.ok(chips.includes('<img') && chips.includes('script>'), chips);
    await page.locator('input[name="source"][value="url"]').check();
    await page.locator('#model-url').fill('javascript:window.__xss=5');
    await page.locator('#load').click();
    await page.waitForFunction(() => document.querySelector('#model-error').textContent.length > 0);
    assert.match(await page.locator('#model-error').textContent(), /Only http and https URLs/);
    assert.equal(await page.evaluate(() => window.__xss), undefined, 'nothing executed');
    assert.equal(await page.locator('img').count(), 0);
    assert.equal(await page.locator('script').count(), 1, 'only the app script');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('cancel mid-sweep leaves a page that runs again; hover, click and keyboard read cells', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    await ready(page);
    // A long sweep: every head at every position of 1,000 prompts, read by KL divergence.
    await page.locator('#dataset-task').selectOption('ioi');
    await page.locator('#dataset-n').fill('1000');
    await page.locator('#metric').selectOption('kl');
    await page.locator('#component').selectOption('z');
    await page.locator('#positions').selectOption('each');
    await page.locator('#run-experiment').click();
    // The core estimates this sweep at over 20 s on the CPU, so the page asks first.
    await page.locator('#run-anyway').click();
    // 1,000 prompts are prepared and run clean and corrupted before the first patch: on a cold
    // 2-core machine its status showed no patch within 30 s.
    await page.waitForFunction(() => /patches/.test(document.querySelector('#run-status').textContent), null, { timeout: 120_000 });
    await page.locator('#cancel').click();
    await page.waitForFunction(() => document.querySelector('#run-status').textContent === 'Cancelled.');
    assert.equal(await page.locator('#run-experiment').isEnabled(), true);
    await page.locator('#preset').selectOption('ioi');
    const results = await run(page);
    assert.equal(results.spec.target.component, 'z');

    // Hover a cell: its value and a sentence about it.
    await page.locator('#heatmap').scrollIntoViewIfNeeded();
    const box = await page.locator('#heatmap').boundingBox();
    const { width, cells } = await page.evaluate(() => window.patchbay.heatmap);
    const scale = box.width / width;
    const [x, y, w, h] = cells[0];
    await page.mouse.move(box.x + (x + w / 2) * scale, box.y + (y + h / 2) * scale);
    await page.waitForFunction(() => /=.*(Patching|patching)/.test(document.querySelector('#hover-text').textContent));
    // Keyboard: focus the heatmap and move.
    await page.locator('#heatmap').focus();
    const first = await page.locator('#hover-text').textContent();
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction((t) => document.querySelector('#hover-text').textContent !== t, first);
    // Enter on a head cell opens its attention patterns in three runs.
    await page.keyboard.press('Enter');
    await page.waitForFunction(() => document.querySelectorAll('#detail-body canvas').length === 3, null, { timeout: 120_000 });
    assert.match(await page.locator('#detail-title').textContent(), /Attention pattern of head/);
    await screenshot(page, 'step3-editor');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('1280x720 and a phone-sized viewport: no horizontal scrolling', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page } = await open(context, server.url);
    await ready(page);
    for (const [width, height] of [[1280, 720], [390, 844]]) {
      await page.setViewportSize({ width, height });
      await page.waitForTimeout(200);
      const scroll = await page.evaluate(() => document.documentElement.scrollWidth);
      assert.ok(scroll <= width, `${width}px wide viewport scrolls to ${scroll}px`);
    }
    await screenshot(page, 'step3-phone');
  } finally {
    await context.close();
  }
});
