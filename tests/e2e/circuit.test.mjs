// The circuit view in the page, on patchbay-ioi: circuit discovery (EAP-IG and EAP) gives the
// same edge scores, exact effects, faithfulness, curve and disagreements as `patchbay circuit
// --json` on the same spec, on the CPU fallback and on WebGPU; the k slider draws k edges;
// hovering an edge names its two ends and its score; the exported circuit.json is the results
// shown; the panel writes the spec's circuit block, and a share link carries it and reproduces
// the same scores; AtP*'s QK fix, offered for EAP, gives the CLI's scores too.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch, serveDist, open, screenshot, ROOT, TOL, cliJson } from './lib.mjs';

const MODEL = join(ROOT, 'dist', 'models', 'patchbay-ioi');

/** Small enough to run in a minute on SwiftShader: 6 IOI prompts, 3 EAP-IG steps, 8 edges checked. */
const SPEC = {
  version: 1,
  model: { embedded: 'patchbay-ioi' },
  prompts: [],
  dataset: { task: 'ioi', n: 6, seed: 3, names: 's2', template: 0 },
  corruption: { method: 'str' },
  metric: { kind: 'logit_diff', normalized: true },
  direction: 'denoising',
  target: { component: 'z', positions: 'all' },
  circuit: { method: 'eap_ig', ig_steps: 3, keep: { top: 12 }, checked: 8 },
};

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

function cliCircuit(spec) {
  return cliJson('circuit', spec, MODEL);
}

/** Every number of a circuit's results that the CLI and the page must agree on, by name. */
function numbers(r) {
  const out = {
    clean_metric: r.clean_metric,
    corrupted_metric: r.corrupted_metric,
    circuit_metric: r.circuit.metric,
    circuit_faithfulness: r.circuit.faithfulness,
  };
  for (const e of r.edges) {
    out[`score ${e.name}`] = e.score;
    if (e.exact !== undefined) out[`exact ${e.name}`] = e.exact;
  }
  for (const p of r.curve) {
    out[`curve ${p.edges} metric`] = p.metric;
    out[`curve ${p.edges} faithfulness`] = p.faithfulness;
  }
  for (const d of r.disagreements) out[`disagreement ${d.edge}`] = d.difference;
  return out;
}

/** Checks the page's results against the CLI's on every number, and returns the largest difference. */
function agree(page, cli, what) {
  const [a, b] = [numbers(page), numbers(cli)];
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), `${what}: the same edges checked and curve points`);
  let max = 0;
  for (const key of Object.keys(a)) {
    const d = Math.abs(a[key] - b[key]);
    assert.ok(d <= TOL, `${what}: ${key} page ${a[key]} CLI ${b[key]}`);
    max = Math.max(max, d);
  }
  for (const key of ['method', 'steps', 'direction', 'metric', 'prompts', 'nodes']) assert.deepEqual(page[key], cli[key], `${what}: ${key}`);
  assert.equal(page.circuit.edges, cli.circuit.edges);
  assert.deepEqual(
    page.edges.filter((e) => e.in_circuit).map((e) => e.name).sort(),
    cli.edges.filter((e) => e.in_circuit).map((e) => e.name).sort(),
    `${what}: the same edges kept`,
  );
  console.log(`${what}: page vs CLI max abs diff ${max.toExponential(2)} over ${Object.keys(a).length} numbers (${page.edges.length} edges)`);
  return max;
}

/** Opens `spec`'s share link, waits for its experiment to run, and returns the page. */
async function openSpec(context, spec) {
  const first = await open(context, server.url);
  await first.page.waitForFunction(() => window.patchbay?.runs > 0 && !window.patchbay.running, null, { timeout: 600_000 });
  const text = await first.page.evaluate((t) => window.patchbayApi.canonical(t), JSON.stringify(spec));
  const link = await first.page.evaluate((s) => window.patchbayApi.link(s), text);
  await first.page.close();
  const opened = await open(context, link);
  await opened.page.waitForFunction(() => window.patchbay?.runs > 0 && !window.patchbay.running, null, { timeout: 600_000 });
  return opened;
}

/** Presses "Find the circuit" and waits for the view. */
async function findCircuit(page) {
  const runs = await page.evaluate(() => window.patchbay.runs);
  await page.locator('#circuit-run').click();
  await page.waitForFunction(
    (n) => (window.patchbay.runs > n && !window.patchbay.running && window.patchbay.circuitShown) || window.patchbay.errors.length,
    runs,
    { timeout: 600_000 },
  );
  const state = await page.evaluate(() => window.patchbay);
  assert.deepEqual(state.errors, []);
  return state.circuit;
}

/** Moves the slider to `k` and waits for the drawing. */
async function slide(page, k) {
  await page.locator('#circuit-k').evaluate((input, k) => {
    input.value = String(k);
    input.dispatchEvent(new Event('input'));
  }, k);
  await page.waitForFunction((k) => window.patchbay.circuitShown?.k === k, k);
  return page.evaluate(() => window.patchbay.circuitShown);
}

test('on the CPU fallback the circuit equals `patchbay circuit`, draws k edges, hovers, exports and shares', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await openSpec(context, SPEC);
    assert.equal(await page.evaluate(() => window.patchbay.backend.kind), 'cpu');
    // The link's circuit block is in the panel's controls.
    assert.equal(await page.locator('#circuit-method').inputValue(), 'eap_ig');
    assert.equal(await page.locator('#circuit-steps').inputValue(), '3');
    assert.equal(await page.locator('#circuit-keep-value').inputValue(), '12');
    assert.equal(await page.locator('#circuit-checked').inputValue(), '8');

    const circuit = await findCircuit(page);
    const results = circuit.results;
    assert.deepEqual(results.spec, JSON.parse(await page.evaluate(() => window.patchbayApi.editor())), "the editor's experiment");
    assert.deepEqual(results.spec.circuit, SPEC.circuit);
    const cli = cliCircuit(results.spec);
    agree(results, cli, 'EAP-IG on the CPU');
    assert.equal(results.edges.length, 100, 'patchbay-ioi: 100 edges of 3 layers of 2 heads and MLPs');
    assert.equal(circuit.edges, 100);
    assert.match(circuit.text, /^EAP-IG \(3 steps\) over 6 prompts: the circuit keeps 12 of 100 edges, faithfulness -?\d/);
    assert.equal(await page.locator('#circuit-disagreements li').count(), results.disagreements.length);
    assert.ok((await page.locator('#circuit-curve svg polyline').count()) === 1, 'the curve is drawn');

    // The slider: opened at the circuit's k, then k edges drawn for each k.
    let shown = await page.evaluate(() => window.patchbay.circuitShown);
    assert.equal(shown.k, 12);
    assert.equal(shown.edges, 12);
    assert.match(shown.caption, /The top 12 of 100 edges \(the circuit\): faithfulness/);
    for (const k of [1, 5, 7, 100]) {
      shown = await slide(page, k);
      assert.equal(shown.edges, k, `k = ${k}`);
      assert.equal(await page.locator('#circuit-graph line.hit').count(), k);
      const point = results.curve.find((p) => p.edges === k);
      if (point) assert.ok(shown.caption.includes(`faithfulness ${point.faithfulness.toFixed(4)}`), shown.caption);
      else assert.match(shown.caption, /faithfulness not measured/);
    }
    assert.equal(await page.locator('#circuit-k-value').textContent(), '100');

    // Hovering the best edge (drawn on top) names its two ends and gives its score and exact effect.
    await slide(page, 12);
    const best = results.edges[0];
    await page.locator('#circuit-graph').scrollIntoViewIfNeeded();
    const box = await page.locator('#circuit-graph line.hit[data-rank="1"]').evaluate((line) => {
      const [x1, y1, x2, y2] = ['x1', 'y1', 'x2', 'y2'].map((a) => line[a].baseVal.value);
      const m = line.getScreenCTM();
      const p = new DOMPoint((x1 + x2) / 2, (y1 + y2) / 2).matrixTransform(m);
      return { x: p.x, y: p.y };
    });
    await page.mouse.move(box.x, box.y);
    await page.waitForFunction(() => window.patchbay.circuitHover?.rank === 1);
    const hover = await page.locator('#circuit-hover').textContent();
    assert.ok(hover.startsWith(`${best.from} → ${best.to}`), hover);
    const score = Number(hover.match(/score (\S+),/)[1]);
    assert.ok(Math.abs(score - best.score) <= 1e-4 * Math.max(1, Math.abs(best.score)), `${score} vs ${best.score}`);
    assert.match(hover, best.exact === undefined ? /exact effect not checked/ : /exact effect -?\d/);
    await screenshot(page, 'step8-circuit');

    // The exports: circuit.json is the results shown, the SVG the drawing shown.
    const [json] = await Promise.all([page.waitForEvent('download'), page.locator('#circuit-json').click()]);
    assert.equal(json.suggestedFilename(), 'circuit.json');
    assert.deepEqual(JSON.parse(readFileSync(await json.path(), 'utf8')), results);
    const [svg] = await Promise.all([page.waitForEvent('download'), page.locator('#circuit-svg').click()]);
    const text = readFileSync(await svg.path(), 'utf8');
    assert.match(text, /^<svg /);
    assert.equal(text.match(/<line data-rank=/g).length, 12);

    // The panel writes the block; the share link carries it, and reproduces the same scores.
    await page.locator('#circuit-checked').fill('10');
    await page.locator('#circuit-checked').dispatchEvent('change');
    const edited = JSON.parse(await page.evaluate(() => window.patchbayApi.editor()));
    assert.deepEqual(edited.circuit, { ...SPEC.circuit, checked: 10 });
    await page.locator('#circuit-checked').fill('8');
    await page.locator('#circuit-checked').dispatchEvent('change');
    await page.locator('#share').click();
    await page.waitForFunction(() => document.querySelector('#share-url').value.startsWith('http'));
    const link = await page.locator('#share-url').inputValue();
    const again = await open(context, link);
    await again.page.waitForFunction(() => window.patchbay?.runs > 0 && !window.patchbay.running, null, { timeout: 600_000 });
    assert.equal(await again.page.evaluate(() => window.patchbayApi.editor()), await page.evaluate(() => window.patchbayApi.editor()), 'the link reopens the same spec');
    const reopened = await findCircuit(again.page);
    const max = agree(reopened.results, results, 'the share link rerun');
    assert.equal(max, 0, 'the same backend gives the same numbers');

    // AtP*'s QK fix: offered for EAP alone, written to the block, and the page's scores are the CLI's.
    assert.equal(await page.locator('#circuit-qk-fix').isDisabled(), true, 'EAP-IG takes no QK fix');
    await page.locator('#circuit-method').selectOption('eap');
    await page.locator('#circuit-qk-fix').check();
    const fixed = JSON.parse(await page.evaluate(() => window.patchbayApi.editor()));
    assert.deepEqual(fixed.circuit, { keep: { top: 12 }, checked: 8, qk_fix: true });
    const qk = await findCircuit(page);
    assert.equal(qk.results.spec.circuit.qk_fix, true);
    agree(qk.results, cliCircuit(qk.results.spec), 'EAP with the QK fix on the CPU');
    assert.deepEqual(problems, []);
    assert.deepEqual(again.problems, []);
  } finally {
    await context.close();
  }
});

test('on WebGPU the circuit equals `patchbay circuit`, by EAP-IG and by EAP', async () => {
  const context = await launch({ webgpu: true });
  try {
    const { page, problems } = await openSpec(context, SPEC);
    assert.equal(await page.evaluate(() => window.patchbay.backend.kind), 'wgpu');
    const ig = await findCircuit(page);
    agree(ig.results, cliCircuit(ig.results.spec), 'EAP-IG on WebGPU');
    // EAP chosen in the panel: written to the spec (ig_steps is EAP-IG's alone), and run.
    await page.locator('#circuit-method').selectOption('eap');
    const spec = JSON.parse(await page.evaluate(() => window.patchbayApi.editor()));
    assert.deepEqual(spec.circuit, { keep: { top: 12 }, checked: 8 }, 'EAP is the default method');
    assert.equal(await page.locator('#circuit-steps').isDisabled(), true);
    const eap = await findCircuit(page);
    assert.equal(eap.results.method, 'eap');
    agree(eap.results, cliCircuit(eap.results.spec), 'EAP on WebGPU');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
