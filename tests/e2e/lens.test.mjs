// The logit lens and direct logit attribution in the page: the same numbers as `patchbay lens`
// on the same spec and model, every view the core lists drawn from the menu, and the direct
// terms summing to the model's own logit difference.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { launch, serveDist, open, ROOT, cliJson } from './lib.mjs';

const MODEL = join(ROOT, 'dist', 'models', 'patchbay-ioi');

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

function cliLens(spec) {
  return cliJson('lens', spec, MODEL);
}

/** The largest difference between the numbers of two JSON values of the same shape. */
function maxDiff(a, b, path = '') {
  if (typeof a === 'number') {
    assert.equal(typeof b, 'number', path);
    return Math.abs(a - b);
  }
  if (Array.isArray(a)) {
    assert.equal(a.length, b.length, path);
    return Math.max(0, ...a.map((x, i) => maxDiff(x, b[i], `${path}[${i}]`)));
  }
  assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort(), path);
  return Math.max(0, ...Object.keys(a).map((k) => maxDiff(a[k], b[k], `${path}.${k}`)));
}

const flat = (g) => (Array.isArray(g) ? g.flatMap(flat) : [g]);

test('the logit lens and DLA in the page equal `patchbay lens`, and every view is drawn', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    await page.waitForFunction(() => window.patchbay?.runs > 0 && !window.patchbay.running, null, { timeout: 600_000 });
    for (const preset of ['ioi', 'factual']) {
      await page.locator('#preset').selectOption(preset);
      const runs = await page.evaluate(() => window.patchbay.runs);
      await page.locator('#lens-run').click();
      await page.waitForFunction((n) => window.patchbay.runs > n && !window.patchbay.running && window.patchbay.lensShown, runs, { timeout: 300_000 });
      const { results, views } = await page.evaluate(() => window.patchbay.lens);
      assert.deepEqual(results.spec, JSON.parse(await page.evaluate(() => window.patchbayApi.editor())), 'the editor\'s experiment');
      const reference = cliLens(results.spec);
      for (const run of ['clean', 'corrupted', 'difference']) {
        const diff = maxDiff(results[run], reference[run], run);
        console.log(`${preset} ${run}: page (CPU) vs CLI max abs diff ${diff.toExponential(2)}`);
        assert.ok(diff <= 1e-4, `${preset} ${run}: ${diff}`);
        // The direct terms sum to the model's own logit difference.
        const r = results[run];
        const sum = [...flat(r.dla_heads), ...flat(r.dla_mlp), r.dla_embed, r.dla_pos_embed, r.dla_attn_bias, r.dla_ln_final_bias].reduce((a, b) => a + b, 0);
        assert.ok(Math.abs(sum - r.logit_diff) < 1e-3, `${preset} ${run}: terms sum to ${sum}, logit diff ${r.logit_diff}`);
      }
      assert.deepEqual(results.lens_axes, reference.lens_axes);
      // The menu lists the core's views, and each draws.
      const options = await page.locator('#lens-view option').evaluateAll((o) => o.map((x) => [x.value, x.textContent]));
      assert.deepEqual(options, views.map((v) => [v.key, v.label]));
      assert.equal(views.length, 15, 'five quantities × clean, corrupted, difference');
      for (const key of ['dla_heads_difference', 'lens_logit_diff_clean', 'dla_mlp_corrupted']) {
        await page.locator('#lens-view').selectOption(key);
        await page.waitForFunction((k) => window.patchbay.lensShown === k, key);
        assert.ok((await page.locator('#lens-map').evaluate((c) => c.width)) > 0);
      }
    }
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
