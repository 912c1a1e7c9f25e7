// A stranger's link is one click away from any user: links that inflate past the core's limits,
// and a link asking for a billion noise samples, each get their message and leave a page that
// runs. A crash inside the wasm (forced here by a trap, as a panic ends) reports "internal
// error", and the next action runs on a fresh worker with the model loaded again.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch, serveDist, open, ROOT } from './lib.mjs';

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

/** A link part: `text` deflated and base64url-encoded, as share.js packs it. */
async function pack(text) {
  const stream = new Blob([new TextEncoder().encode(text)]).stream().pipeThrough(new CompressionStream('deflate-raw'));
  return `v1.${Buffer.from(await new Response(stream).arrayBuffer()).toString('base64url')}`;
}

const SPEC = {
  version: 1,
  model: { embedded: 'patchbay-ioi' },
  prompts: [{ clean: 'When Mary and John went to the store, John gave a drink to', corrupted: 'When Mary and John went to the store, Mary gave a drink to', answer: ' Mary', counter_answer: ' John' }],
  corruption: { method: 'str' },
  metric: { kind: 'logit_diff', normalized: true },
  direction: 'denoising',
  target: { component: 'resid_pre', positions: 'each' },
};

/** Waits until the page has run an experiment and shows its results. */
async function ranOnce(page) {
  await page.waitForFunction(() => window.patchbay?.runs > 0 && !window.patchbay.running, null, { timeout: 600_000 });
  assert.equal(await page.locator('#results').isHidden(), false, 'the page ran an experiment');
}

test('links past the inflation cap and a billion-sample link get their message; the page stays usable', async () => {
  // Spaces compress about a thousand times: a few kilobytes of link inflate to 16 MiB.
  const spaces = ' '.repeat(16 << 20);
  const billion = { ...SPEC, corruption: { method: 'gn', positions: [2], scale: 3, samples: 1e9 } };
  const cases = [
    { hash: `spec=${await pack(`{"version":1,${spaces}}`)}`, expected: /This link is larger than Patchbay links can be: its experiment part inflates past ([\d.]+) MiB/, limit: 'spec_bytes' },
    {
      hash: `spec=${await pack(JSON.stringify(SPEC))}&results=${await pack(`{${spaces}}`)}`,
      expected: /This link is larger than Patchbay links can be: its results part inflates past ([\d.]+) MiB.*opens without them/,
      limit: 'results_bytes',
    },
    { hash: `spec=${await pack(JSON.stringify(billion))}`, expected: /corruption\.samples.*1000000000.*1 to 64 samples/ },
  ];
  for (const { hash, expected, limit } of cases) {
    assert.ok(hash.length < 64 * 1024, `the link is small (${hash.length} characters)`);
    const context = await launch({ webgpu: false });
    try {
      const { page, problems } = await open(context, `${server.url}#${hash}`);
      await page.waitForFunction(() => document.querySelector('#link-error').textContent.length > 0, null, { timeout: 120_000 });
      const message = await page.locator('#link-error').textContent();
      const match = message.match(expected);
      assert.ok(match, message);
      // The page goes on: it runs an experiment (the link's, when its spec opened; else the default).
      await ranOnce(page);
      if (limit) {
        const cap = await page.evaluate((key) => window.patchbayApi.catalog().link[key], limit);
        assert.equal(Number(match[1]), cap / (1 << 20), "the cap is the core's");
      }
      const heap = await page.evaluate(() => performance.memory?.usedJSHeapSize ?? 0);
      assert.ok(heap < 256 << 20, `the page's heap stays small (${heap} bytes)`);
      assert.deepEqual(problems, []);
    } finally {
      await context.close();
    }
  }
});

test('a crash inside the wasm says "internal error"; the next run reloads the model and gives the same grid', async () => {
  const context = await launch({ webgpu: false });
  // The glue, with one addition: after a run's first progress call, once the worker's
  // `crashNext` is set, the next call from Rust into JavaScript traps the instance (an
  // impossible allocation aborts, the way a panic ends), with Rust frames on the stack.
  await context.route('**/pkg/patchbay_web.js', async (route) => {
    const glue = readFileSync(join(ROOT, 'dist', 'pkg', 'patchbay_web.js'), 'utf8');
    const trap = `
const patchbayImports = __wbg_get_imports;
__wbg_get_imports = function () {
  const imports = patchbayImports();
  for (const module of Object.values(imports)) {
    for (const [name, f] of Object.entries(module)) {
      if (typeof f !== 'function') continue;
      module[name] = function (...args) {
        if (self.crashNow) {
          self.crashNow = false;
          (wasm.__wbindgen_malloc_command_export ?? wasm.__wbindgen_malloc)(0xfffffff0, 1);
        }
        return f.apply(this, args);
      };
    }
  }
  return imports;
};
const patchbayRun = Session.prototype.run;
Session.prototype.run = function (spec, progress, ...rest) {
  if (!self.crashNext) return patchbayRun.call(this, spec, progress, ...rest);
  self.crashNext = false;
  return patchbayRun.call(this, spec, (...args) => {
    self.crashNow = true;
    return progress(...args);
  }, ...rest);
};`;
    await route.fulfill({ body: glue + trap, contentType: 'text/javascript' });
  });
  try {
    const { page, problems } = await open(context, server.url);
    await ranOnce(page);
    const first = await page.evaluate(() => window.patchbay.results.grid);
    const [worker] = page.workers();
    await worker.evaluate(() => {
      self.crashNext = true;
    });
    await page.locator('#run-experiment').click();
    await page.waitForFunction(() => document.querySelector('#run-error').textContent.length > 0, null, { timeout: 120_000 });
    assert.match(await page.locator('#run-error').textContent(), /Internal error in Patchbay \(a bug, not a fault of your input\): RuntimeError.*reloaded on your next action/);
    assert.equal(await page.locator('#run-experiment').isEnabled(), true, 'Run stays available');
    const runs = await page.evaluate(() => window.patchbay.runs);
    await page.locator('#run-experiment').click();
    await page.waitForFunction((n) => window.patchbay.runs > n && !window.patchbay.running, runs, { timeout: 600_000 });
    const state = await page.evaluate(() => window.patchbay);
    assert.equal(state.restarts, 1, 'one fresh worker');
    assert.equal(page.workers().length, state.workers, 'the crashed worker is gone');
    assert.match(await page.locator('#model-status').textContent(), /Reloaded .* after the internal error/);
    assert.deepEqual(state.results.grid, first, 'the fresh worker gives the same grid');
    assert.equal(await page.locator('#run-error').textContent(), '');
    // Hovering the grid asks the fresh worker, which holds the results on show.
    const box = await page.locator('#heatmap').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.waitForFunction(() => /=/.test(document.querySelector('#hover-text').textContent));
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
