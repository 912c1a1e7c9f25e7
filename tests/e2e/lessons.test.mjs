// The model that ships with the app and the lessons built on it: the page works with the
// network blocked and opens on a heatmap of the embedded model; every lesson step has its own
// link, runs, and shows numbers in which its headline claim holds (checked here from the
// numbers the page shows); presenter mode moves between steps with the keyboard. A screenshot
// of each step is saved in tests/e2e/artifacts/.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, mkdirSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, serveDist, open, screenshot, ROOT } from './lib.mjs';
import { serve } from './server.mjs';

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

const flat = (g) => (Array.isArray(g) ? g.flatMap(flat) : [g]);
/** The value of head `layer`.`head` in a [layer][head] grid. */
const head = (grid, layer, h) => grid[layer][h];
const others = (grid, keep) =>
  grid.flatMap((row, l) => row.map((v, h) => [`${l}.${h}`, v])).filter(([name]) => !keep.includes(name)).map(([, v]) => v);

/** Each step's headline claim, checked on the numbers the page shows. */
const CLAIMS = [
  ({ results }) => {
    const g = results.grid;
    const s2 = 10;
    const end = g[0].length - 1;
    assert.ok(g[0][s2] > 0.95 && g[1][s2] > 0.95, 'S2 carries everything entering layers 0 and 1');
    assert.ok(g[2][end] > 0.6 && g[2][end] > g[2][s2], 'entering layer 2 it has mostly moved to the end');
    assert.ok(flat(g.map((row) => row.slice(0, s2))).every((v) => v === 0), 'positions before S2 are exactly 0');
  },
  ({ results }) => {
    const g = results.grid;
    assert.ok(head(g, 0, 0) > 0.9, `0.0 ${head(g, 0, 0)}`);
    assert.ok(head(g, 1, 0) > 0.3 && head(g, 1, 1) > 0.3, 'layer-1 heads about 40%');
    assert.ok(others(g, ['0.0', '1.0', '1.1']).every((v) => v < 0.2), 'others under 20%');
  },
  ({ comparison }) => {
    const [d, n] = [comparison.a, comparison.b];
    assert.equal(d.spec.direction, 'denoising');
    assert.equal(n.spec.direction, 'noising');
    assert.ok(head(n.grid, 0, 0) < -0.9, 'noising 0.0 removes about all');
    assert.ok(head(n.grid, 1, 0) < -0.3 && head(n.grid, 1, 1) < -0.3, 'noising 1.0 and 1.1 about 45%');
    assert.ok(others(n.grid, ['0.0', '1.0', '1.1']).every((v) => v > -0.25), 'the same heads');
  },
  ({ comparison }) => {
    const [str, gn] = [comparison.a, comparison.b];
    assert.equal(gn.spec.corruption.method, 'gn');
    assert.ok(gn.prompts[0].corrupted.prob_answer > 0.1, `GN keeps P(Mary) at ${gn.prompts[0].corrupted.prob_answer}`);
    assert.ok(str.prompts[0].corrupted.prob_answer < 0.01, 'STR takes it to 0');
    for (const g of [str.grid, gn.grid]) assert.ok(head(g, 0, 0) > 0.5 && head(g, 1, 0) > 0.3 && head(g, 1, 1) > 0.3);
    assert.ok(head(gn.grid, 2, 1) > 0.2 && head(gn.grid, 2, 1) > head(str.grid, 2, 1), 'GN lifts head 2.1');
  },
  ({ comparison }) => {
    const [prob, ld] = [comparison.a, comparison.b];
    assert.equal(prob.spec.metric.kind, 'prob');
    for (const h of [0, 1]) assert.ok(head(prob.grid, 1, h) < 0.5 * head(ld.grid, 1, h), `layer-1 head ${h} hidden by probability`);
    assert.ok(Math.min(...flat(ld.grid)) > -0.05, 'no negative component');
  },
  ({ results }) => {
    assert.ok(results.window && results.window.size === 3);
    assert.ok(results.window.peak_ratio < 1, `peak ratio ${results.window.peak_ratio}`);
    assert.ok(flat(results.grid).every((v) => v > 0.9), 'every window restores the behaviour');
    const single = flat(results.window.single_layer);
    assert.ok(single[0] > 0.9 && single[1] > 0.85, 'layers 0 and 1 alone restore about all of it');
  },
  ({ comparison }) => {
    const [s2, s1io] = [comparison.a, comparison.b];
    assert.match(s1io.spec.prompts[0].corrupted, /Anna and Tom/);
    assert.ok(head(s1io.grid, 2, 0) > 0.2 && head(s1io.grid, 2, 1) > 0.2, 'both layer-2 heads under S1+IO');
    assert.ok(head(s2.grid, 2, 0) < 0.2 && head(s2.grid, 2, 1) < 0.2, 'neither under S2');
    for (const g of [s2.grid, s1io.grid]) assert.ok(head(g, 0, 0) > 0.5 && head(g, 1, 0) > 0.3);
  },
  ({ results, lens }) => {
    const dla = lens.results.clean.dla_heads;
    assert.ok(Math.abs(lens.results.clean.logit_diff - 14.1) < 0.1, `clean logit difference ${lens.results.clean.logit_diff}`);
    assert.ok(Math.abs(head(dla, 1, 0) - 5.0) < 0.1 && Math.abs(head(dla, 1, 1) - 4.9) < 0.1, `1.0 ${head(dla, 1, 0)}, 1.1 ${head(dla, 1, 1)} directly`);
    assert.ok(Math.abs(head(dla, 0, 0) - 0.3) < 0.1, `0.0 writes ${head(dla, 0, 0)} directly`);
    assert.ok(head(results.grid, 0, 0) > 0.9, 'patching ranks 0.0 first');
  },
  ({ circuit }) => {
    const r = circuit.results;
    assert.equal(r.method, 'eap');
    assert.equal(r.prompts, 20);
    const query = r.edges.find((e) => e.name === 'input->a0.h0<q>');
    assert.equal(query.rank, 12, 'EAP ranks the query edge 12th');
    assert.ok(Math.abs(query.score - 0.9) < 0.1, `its score ${query.score}`);
    assert.ok(Math.abs(query.exact - 26.2) < 0.1, `its exact effect ${query.exact}`);
    assert.ok(Math.abs(r.clean_metric - r.corrupted_metric - 27.8) < 0.1, 'of 27.8');
    assert.ok(r.edges.every((e) => e.exact === undefined || e.exact <= query.exact), 'more than any other edge checked');
    assert.equal(r.disagreements[0].edge, 'input->a0.h0<q>', 'the largest disagreement');
    assert.equal(query.in_circuit, false);
    assert.equal(r.circuit.edges, 10);
    assert.ok(Math.abs(r.circuit.faithfulness + 0.05) < 0.01, `faithfulness ${r.circuit.faithfulness}`);
    assert.equal(circuit.disagreements.length, r.disagreements.length, 'the disagreements are listed');
  },
];

test('with the network blocked, the page opens on a heatmap of the embedded model', async () => {
  const context = await launch({ webgpu: false });
  const blocked = [];
  await context.route(
    (url) => !url.href.startsWith(server.url),
    (route) => {
      blocked.push(route.request().url());
      return route.abort('internetdisconnected');
    },
  );
  try {
    const { page, problems } = await open(context, server.url);
    await page.waitForFunction(() => window.patchbay?.heatmap || window.patchbay?.errors.length, null, { timeout: 600_000 });
    const state = await page.evaluate(() => window.patchbay);
    assert.deepEqual(state.errors, []);
    assert.deepEqual(state.model.source, { embedded: 'patchbay-ioi' });
    assert.equal(state.model.n_layer, 3);
    assert.ok(state.heatmap.cells.length > 0, 'a heatmap is drawn');
    assert.deepEqual(blocked, [], 'nothing outside the page was requested');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('after one visit the page, a lesson and the embedded model work with every request blocked, under a sub-path', async () => {
  // Served under a sub-path, as on GitHub Pages: every URL of the build is relative.
  const site = mkdtempSync(join(tmpdir(), 'patchbay-site-'));
  mkdirSync(join(site, 'sub'));
  symlinkSync(join(ROOT, 'dist'), join(site, 'sub', 'path'));
  const host = await serve(site, 0);
  const context = await launch({ webgpu: false, serviceWorkers: 'allow' });
  try {
    const base = `${host.url}sub/path/`;
    const first = await context.newPage();
    await first.goto(base);
    await first.waitForFunction(() => window.patchbay?.offline && window.patchbay?.heatmap, null, { timeout: 600_000 });
    const cached = await first.evaluate(async () => {
      const keys = await caches.keys();
      const cache = await caches.open(keys.find((k) => k.startsWith('patchbay-app-')));
      return (await cache.keys()).map((r) => new URL(r.url).pathname);
    });
    for (const file of ['/sub/path/', '/sub/path/index.html', '/sub/path/pkg/patchbay_web_bg.wasm', '/sub/path/models/patchbay-ioi/model.safetensors', '/sub/path/web/lessons.js']) {
      assert.ok(cached.includes(file), `${file} is precached`);
    }
    await first.close();
    // No network at all: the server is gone and the browser is offline.
    await host.close();
    await context.setOffline(true);
    const { page, problems } = await open(context, `${base}?backend=cpu#lesson=2`);
    await page.waitForFunction(() => window.patchbay?.lesson?.index === 1 || window.patchbay?.errors.length, null, { timeout: 600_000 });
    const state = await page.evaluate(() => window.patchbay);
    assert.deepEqual(state.errors, []);
    assert.deepEqual(state.model.source, { embedded: 'patchbay-ioi' });
    assert.ok(state.heatmap.cells.length > 0, 'a heatmap is drawn');
    CLAIMS[1](state.lesson);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    await host.close().catch(() => {});
  }
});

test('every lesson step runs from its own link and its claim holds in the numbers shown', async () => {
  const context = await launch({ webgpu: false });
  try {
    for (let step = 1; step <= CLAIMS.length; step++) {
      const { page, problems } = await open(context, `${server.url}#lesson=${step}`);
      await page.waitForFunction((i) => window.patchbay?.lesson?.index === i || window.patchbay?.errors.length, step - 1, { timeout: 600_000 });
      const state = await page.evaluate(() => window.patchbay);
      assert.deepEqual(state.errors, [], `step ${step}`);
      assert.match(await page.locator('#lesson-step').textContent(), new RegExp(`step ${step} of ${CLAIMS.length}`));
      assert.ok((await page.locator('#lesson-question').textContent()).length > 20, 'a question for the class');
      assert.equal(await page.locator('#lesson-link').getAttribute('href'), `#lesson=${step}`);
      CLAIMS[step - 1](state.lesson);
      await screenshot(page, `step4-lesson-${step}`);
      assert.deepEqual(problems, []);
      await page.close();
    }
  } finally {
    await context.close();
  }
});

test('presenter mode: large type, and the arrow keys move between steps', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page } = await open(context, `${server.url}#lesson=2&present=1`);
    await page.waitForFunction(() => window.patchbay?.lesson?.index === 1, null, { timeout: 600_000 });
    assert.equal(await page.evaluate(() => document.body.classList.contains('present')), true);
    const size = await page.evaluate(() => parseFloat(getComputedStyle(document.body).fontSize));
    assert.ok(size >= 24, `font size ${size}`);
    assert.equal(await page.locator('#model-panel').isVisible(), false);
    await page.locator('#lesson-title').click();
    await page.keyboard.press('ArrowRight');
    await page.waitForFunction(() => window.patchbay?.lesson?.index === 2, null, { timeout: 600_000 });
    assert.match(page.url(), /#lesson=3&present=1$/);
    await page.keyboard.press('ArrowLeft');
    await page.waitForFunction(() => window.patchbay?.lesson?.index === 1, null, { timeout: 600_000 });
    await screenshot(page, 'step4-presenter');
  } finally {
    await context.close();
  }
});
