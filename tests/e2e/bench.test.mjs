// bench.html, the benchmark that needs no download: it builds the seeded GPT-2-small-shaped
// model inside the page, times the first use, a forward pass and the three sweeps, and prints
// them with the adapter's name. The model it builds is the one `patchbay init --shape gpt2-small
// --seed 0` writes: its resid_pre grid equals the CLI's on that checkpoint within 1e-4.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, serveDist, open, screenshot, maxAbsDiff, ROOT, TOL } from './lib.mjs';

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

const BIN = join(ROOT, 'target', 'release', 'patchbay');

test('bench.html builds the seeded GPT-2-small shape, times it on the CPU fallback, and its grid is the CLI\'s', async () => {
  const context = await launch({ webgpu: false });
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-bench-'));
  try {
    const { page, problems } = await open(context, `${server.url}bench.html?backend=cpu&shape=gpt2-small&run=1`);
    await page.waitForFunction(() => window.patchbayBench?.rows || window.patchbayBench?.error, null, { timeout: 600_000 });
    const state = await page.evaluate(() => window.patchbayBench);
    assert.equal(state.error, null);
    assert.equal(state.backend.kind, 'cpu');
    assert.equal(state.rows.length, 7);
    assert.ok(state.rows.every((r) => r.seconds > 0), JSON.stringify(state.rows));
    assert.match(state.rows[0].name, /build the model \(seeded gpt2-small\)/);
    assert.equal(await page.locator('#bench-table tbody tr').count(), 7);
    const markdown = await page.locator('#bench-markdown').textContent();
    assert.match(markdown, /^adapter: .*CPU/);
    assert.match(markdown, /\| head sweep by position \(layer × position × head\) \| \d+\.\d{3} \|/);
    console.log(markdown);
    await screenshot(page, 'step9-bench');

    // The same model as `patchbay init`: the resid_pre grid agrees with the CLI's.
    const model = join(dir, 'model');
    execFileSync(BIN, ['init', '--shape', 'gpt2-small', '--seed', '0', '--out', model], { stdio: 'ignore' });
    const spec = { ...JSON.parse(state.results.resid_pre.spec_text ?? JSON.stringify(state.results.resid_pre.spec)), model: { local: model } };
    writeFileSync(join(dir, 'spec.json'), JSON.stringify(spec));
    const cli = JSON.parse(execFileSync(BIN, ['run', join(dir, 'spec.json'), '--json', '--quiet'], { maxBuffer: 1 << 26 }));
    const diff = maxAbsDiff(state.results.resid_pre.grid.flat(Infinity), cli.grid.flat(Infinity));
    console.log(`bench.html's seeded model vs patchbay init's: resid_pre grid max abs diff ${diff.toExponential(2)}`);
    assert.ok(diff <= TOL, `${diff}`);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
