// The Model menu's GPT-2 family: four models from the core's catalog, each with its download
// size from the Hub's headers (intercepted here: the Hub is unreachable), the memory it needs
// and whether this device holds it. On the CPU fallback with navigator.deviceMemory forced to
// 1 GiB, medium may not fit, large (too much for the device) and XL (too much for wasm32) are
// refused with the core's message before any of their files is downloaded; small (served from
// the tiny fixture) still loads. A link naming GPT-2 medium is now one the page can load.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { launch, serveDist, open, waitForPrediction, FIXTURES } from './lib.mjs';

const TINY = join(FIXTURES, 'models', 'tiny');
/** What the Hub's HEAD says of each model.safetensors: small is the tiny fixture, served. */
const SIZES = {
  'openai-community/gpt2': readFileSync(join(TINY, 'model.safetensors')).length,
  'openai-community/gpt2-medium': 1_519_984_000,
  'openai-community/gpt2-large': 3_247_202_000,
  'openai-community/gpt2-xl': 6_431_878_000,
};

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

/** The Hub: HEADs give each model's size; GETs (counted per model) serve the tiny fixture for small. */
async function fakeHub(context) {
  const gets = {};
  await context.route('https://huggingface.co/**', async (route) => {
    const url = new URL(route.request().url());
    const [, id, file] = url.pathname.match(/^\/(.+)\/resolve\/main\/(.+)$/) ?? [];
    const cors = { 'access-control-allow-origin': '*', 'access-control-expose-headers': 'content-length, x-linked-size' };
    if (route.request().method() === 'HEAD' && file === 'model.safetensors' && SIZES[id]) {
      const size = String(SIZES[id]);
      return route.fulfill({ status: 200, headers: { ...cors, 'content-length': size, 'x-linked-size': size } });
    }
    gets[id] = [...(gets[id] ?? []), file];
    try {
      if (id !== 'openai-community/gpt2') throw new Error('not served');
      const body = readFileSync(join(TINY, file));
      return route.fulfill({ status: 200, body, headers: { ...cors, 'content-length': String(body.length) } });
    } catch {
      return route.fulfill({ status: 404, body: 'Entry not found', headers: cors });
    }
  });
  return gets;
}

/** Opens a link in the page (as pasting it into the tab does) and waits until it is open. */
async function openInPlace(page, link) {
  const before = await page.evaluate(() => window.patchbay.links);
  await page.evaluate((hash) => (location.hash = hash), new URL(link).hash);
  await page.waitForFunction((n) => window.patchbay.links > n, before);
}

async function chooseAndLoad(page, id) {
  await page.locator(`input[name="hub-model"][value="${id}"]`).check();
  await page.evaluate(() => {
    window.patchbay.prediction = null;
    window.patchbay.errors = [];
  });
  await page.locator('#load').click();
}

test('the GPT-2 family: sizes from the Hub, what each needs, refusals before any download, small still loads', async () => {
  const context = await launch({ webgpu: false });
  await context.addInitScript(() => Object.defineProperty(Navigator.prototype, 'deviceMemory', { get: () => 1, configurable: true }));
  try {
    const gets = await fakeHub(context);
    const { page, problems } = await open(context, server.url);
    await waitForPrediction(page);
    const catalog = await page.evaluate(() => window.patchbayApi.catalog());
    assert.deepEqual(catalog.hub_models.map((m) => m.id), Object.keys(SIZES));

    await page.locator('input[name="source"][value="hub"]').check();
    await page.waitForFunction(() => [...document.querySelectorAll('.hub-fit')].every((s) => s.dataset.verdict));
    const entries = await page.locator('#hub-models label').allTextContents();
    assert.equal(entries.length, 4);
    const sizes = ['3.3 MB download', '1.5 GB download', '3.2 GB download', '6.4 GB download'];
    for (const [i, text] of entries.entries()) {
      assert.match(text, new RegExp(`^ ${catalog.hub_models[i].label} \\(${catalog.hub_models[i].id}\\): ${catalog.hub_models[i].n_layer} layers`));
      assert.ok(text.includes(sizes[i]), `${text} has ${sizes[i]}`);
      assert.match(text, /needs [\d.]+ [MG]B of memory/);
    }
    const verdicts = await page.locator('.hub-fit').evaluateAll((spans) => spans.map((s) => s.dataset.verdict));
    assert.deepEqual(verdicts, ['fits', 'may_not_fit', 'does_not_fit', 'does_not_fit']);
    console.log(entries.join('\n'));

    for (const [id, message] of [
      ['openai-community/gpt2-xl', /^GPT-2 XL needs 6\.55 GB of WebAssembly memory to load on the CPU; its 6\.23 GB of float32 parameters are read into WebAssembly memory, which holds at most 4\.29 GB \(4 GiB\) in any browser, so it cannot load here\.$/],
      ['openai-community/gpt2-large', /^GPT-2 large needs 3\.35 GB of WebAssembly memory to load on the CPU; the tab holds 3\.35 GB at the peak and this device reports 1 GiB \(navigator\.deviceMemory\), less than 2 GiB, so it cannot load here\.$/],
    ]) {
      await chooseAndLoad(page, id);
      await page.waitForFunction(() => document.querySelector('#model-error').textContent && !document.querySelector('#load').disabled);
      assert.match(await page.locator('#model-error').textContent(), message);
      assert.match(await page.locator('#hub-size').textContent(), message.source.includes('XL') ? /cannot load here/ : /less than 2 GiB/);
      assert.equal(gets[id], undefined, `nothing of ${id} was downloaded`);
      assert.match(await page.locator('#model-status').textContent(), /The previous model, patchbay-ioi .* is still loaded/);
    }

    // Small fits and loads: only its files were fetched.
    await chooseAndLoad(page, 'openai-community/gpt2');
    await waitForPrediction(page);
    assert.match(await page.locator('#model-status').textContent(), /3 layers.*\(downloaded\)/);
    assert.equal(gets['openai-community/gpt2'].filter((f) => f === 'model.safetensors').length, 1);
    assert.deepEqual(Object.keys(gets), ['openai-community/gpt2']);

    // A link that names GPT-2 medium: the page offers to load it.
    const spec = await page.evaluate(() => window.patchbayApi.editor());
    const medium = JSON.stringify({ ...JSON.parse(spec), model: { hub: 'openai-community/gpt2-medium' } });
    await openInPlace(page, await page.evaluate((s) => window.patchbayApi.link(s), medium));
    assert.match(await page.locator('#link-status').textContent(), /This link uses GPT-2 medium: load it \(above\) to run the experiment\./);
    assert.equal(await page.locator('input[name="hub-model"][value="openai-community/gpt2-medium"]').isChecked(), true);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
