// The CPU fallback's pool of Web Workers (web/worker-pool.js): a dataset run shared by three
// workers, each with its own WebAssembly instance and model, gives the results of one worker
// alone, byte for byte, with progress that rises to the total; Cancel stops every worker, and
// the pool then runs again to the same results; a change of model ends the helpers first.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { launch, serveDist, open } from './lib.mjs';

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

/** The page on the CPU fallback with `workers` workers, its first run done. */
async function pooledPage(context, workers) {
  const opened = await open(context, `${server.url}?backend=cpu&workers=${workers}`);
  const { page } = opened;
  await page.waitForFunction(() => window.patchbay?.heatmap || window.patchbay?.errors.length, null, { timeout: 600_000 });
  await page.waitForFunction((n) => window.patchbay.workers === n, workers, { timeout: 300_000 });
  assert.equal(page.workers().length, workers);
  return opened;
}

/** Sets an IOI dataset of `n` prompts (seed 3) sweeping every head at every position, and starts it. */
async function startDataset(page, n) {
  await page.locator('#dataset-task').selectOption('ioi');
  await page.locator('#dataset-n').fill(String(n));
  await page.locator('#dataset-seed').fill('3');
  await page.locator('#component').selectOption('z');
  await page.locator('#positions').selectOption('each');
  const runs = await page.evaluate(() => window.patchbay.runs);
  await page.locator('#run-experiment').click();
  // A long run on the CPU asks first.
  await page.waitForFunction(
    (k) => window.patchbay.running || window.patchbay.runs > k || !document.querySelector('#cpu-confirm').hidden || window.patchbay.errors.length,
    runs,
    { timeout: 60_000 },
  );
  if (await page.locator('#cpu-confirm').isVisible()) await page.locator('#run-anyway').click();
  return runs;
}

async function runDataset(page, n) {
  const runs = await startDataset(page, n);
  await page.waitForFunction((k) => window.patchbay.runs > k && !window.patchbay.running, runs, { timeout: 600_000 });
  const state = await page.evaluate(() => ({ results: JSON.stringify(window.patchbay.results), progress: window.patchbay.progress, errors: window.patchbay.errors }));
  assert.deepEqual(state.errors, []);
  return state;
}

test('three workers sharing each run give the results of one alone, with progress to the total; Cancel stops them all; a model change ends the helpers first', async () => {
  const context = await launch({ webgpu: false });
  try {
    const alone = await pooledPage(context, 1);
    const one = await runDataset(alone.page, 12);
    assert.doesNotMatch(await alone.page.locator('#model-status').textContent(), /workers share/);
    assert.deepEqual(alone.problems, []);
    await alone.page.close();

    const { page, problems } = await pooledPage(context, 3);
    assert.match(await page.locator('#model-status').textContent(), /\(shipped with the app\)\. 3 workers share each run\.$/);
    const three = await runDataset(page, 12);
    assert.equal(JSON.parse(three.results).prompts.length, 12);
    assert.equal(three.results, one.results, 'the same results, byte for byte');
    // The workers' counts add up: the bar rises to the total (which no worker reaches alone: each
    // runs a share of the batches) and never goes back.
    assert.ok(one.progress.length > 1, JSON.stringify(one.progress));
    for (const progress of [one.progress, three.progress]) {
      assert.ok(progress.every(([done, total], i) => done <= total && (i === 0 || done >= progress[i - 1][0])), JSON.stringify(progress));
      const [done, total] = progress.at(-1);
      assert.equal(done, total);
    }
    assert.equal(three.progress.at(-1)[1], one.progress.at(-1)[1]);

    // Cancel a long shared run after its first patches: every worker stops, and the pool runs again.
    await startDataset(page, 300);
    await page.waitForFunction(() => window.patchbay.progress.length > 0, null, { timeout: 300_000 });
    await page.locator('#cancel').click();
    await page.waitForFunction(() => document.querySelector('#run-status').textContent === 'Cancelled.', null, { timeout: 120_000 });
    const again = await runDataset(page, 12);
    assert.equal(again.results, one.results, 'after a Cancel, the same results again');
    assert.equal(page.workers().length, 3, 'no worker was lost');

    // A change of model ends the helpers and their copies of the model first, so the lead's
    // download and load never sit beside them; a load that fails leaves the lead its model, the
    // helpers load it again, and the pool gives the same results.
    let release;
    const held = new Promise((resolve) => (release = resolve));
    await context.route('**/held/**', async (route) => {
      await held;
      await route.fulfill({ status: 404, body: 'Entry not found' });
    });
    await page.locator('input[name="source"][value="url"]').check();
    await page.locator('#model-url').fill(`${server.url}held/`);
    await page.locator('#load').click();
    await page.waitForFunction(() => window.patchbay.workers === 1, null, { timeout: 60_000 });
    for (let i = 0; page.workers().length > 1 && i < 100; i++) await page.waitForTimeout(50);
    assert.equal(page.workers().length, 1, 'only the lead while it downloads');
    release();
    await page.waitForFunction(() => document.querySelector('#model-error').textContent.length > 0, null, { timeout: 60_000 });
    assert.match(await page.locator('#model-error').textContent(), /held\/config\.json answered 404/);
    await page.waitForFunction(() => window.patchbay.workers === 3, null, { timeout: 300_000 });
    assert.equal(await page.locator('#model-status').textContent(), 'The previous model, patchbay-ioi (a model that ships with the app), is still loaded. 3 workers share each run.');
    await page.evaluate(() => (window.patchbay.errors = []));
    const reloaded = await runDataset(page, 12);
    assert.equal(reloaded.results, one.results, 'after a failed load, the same results again');
    assert.equal(page.workers().length, 3);
    assert.deepEqual(problems.filter((p) => !/404/.test(p)), []);
  } finally {
    await context.close();
  }
});
