// Datasets in the page, on the model that ships with the app: a generated IOI dataset runs with
// its mean streaming in, the hover gives the spread across prompts, the detection list finds the
// model's known heads, and the method-sensitivity panel renders Table 1 (heads detected per
// class), the Jaccard and rank-correlation matrices.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, serveDist, open, screenshot } from './lib.mjs';

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

test('a generated IOI dataset, its detections and the method-sensitivity table', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, server.url);
    await page.waitForFunction(() => window.patchbay?.heatmap || window.patchbay?.errors.length, null, { timeout: 600_000 });
    await page.locator('#dataset-task').selectOption('ioi');
    await page.locator('#dataset-n').fill('40');
    await page.locator('#dataset-seed').fill('2');
    await page.locator('#detect').selectOption('threshold');
    const before = await page.evaluate(() => window.patchbay.runs);
    await page.locator('#run-experiment').click();
    await page.waitForFunction((n) => window.patchbay.runs > n && !window.patchbay.running, before, { timeout: 600_000 });
    const state = await page.evaluate(() => window.patchbay);
    assert.deepEqual(state.errors, []);
    const r = state.results;
    assert.equal(r.spec.dataset.n, 40);
    assert.equal(r.prompts.length, 40);
    assert.equal(r.prompt_grids.length, 40);
    assert.ok(state.partials >= 1, 'the mean streamed in');
    const heads = r.detected.map((d) => d.index.join('.')).sort();
    assert.deepEqual(heads, ['0.0', '1.0', '1.1']);
    assert.match(await page.locator('#detected').textContent(), /head 0\.0/);
    // The known classes are outlined, with a legend.
    assert.match(await page.locator('#class-legend').textContent(), /movers \(S2 to the end\): 1\.0, 1\.1/);
    // Hover: the spread across prompts.
    await page.locator('#heatmap').scrollIntoViewIfNeeded();
    const box = await page.locator('#heatmap').boundingBox();
    const { width, cells } = state.heatmap;
    const [x, y, w, h] = cells[0];
    await page.mouse.move(box.x + ((x + w / 2) * box.width) / width, box.y + ((y + h / 2) * box.width) / width);
    await page.waitForFunction(() => /Across the 40 prompts: sd/.test(document.querySelector('#hover-text').textContent));

    // Method sensitivity on the same dataset.
    await page.locator('input[name="sens-corruption"][value="str:s1_io"]').check();
    await page.locator('input[name="sens-direction"][value="noising"]').check();
    await page.locator('#sensitivity-run').click();
    await page.waitForFunction(() => window.patchbay.sensitivity || window.patchbay.errors.length, null, { timeout: 600_000 });
    const sens = await page.evaluate(() => window.patchbay.sensitivity);
    assert.deepEqual(await page.evaluate(() => window.patchbay.errors), []);
    // 3 corruptions × 2 metrics × 2 directions.
    assert.equal(sens.cases.length, 12);
    const rows = await page.locator('#class-table tr').count();
    assert.equal(rows, 1 + 2, 'a header and one row per class');
    const firstRow = await page.locator('#class-table tr').nth(1).locator('td').allTextContents();
    assert.equal(firstRow[0], '0.0');
    assert.equal(firstRow[1], '0.0 (1/1)', 'STR S2 · logit difference · denoising finds the IO writer');
    const movers = await page.locator('#class-table tr').nth(2).locator('td').allTextContents();
    assert.equal(movers[1], '1.0 1.1 (2/2)');
    for (const id of ['#jaccard', '#spearman']) {
      const size = await page.locator(id).evaluate((c) => [c.width, c.height]);
      assert.ok(size[0] > 100 && size[1] > 100, `${id} drawn`);
    }
    for (let i = 0; i < sens.cases.length; i++) assert.equal(sens.jaccard[i][i], 1);
    await screenshot(page, 'step5-sensitivity');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
