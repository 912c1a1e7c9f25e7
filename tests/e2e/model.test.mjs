// The page runs GPT-2 in a real browser: on WebGPU (SwiftShader here) and on the CPU fallback
// its logits match Hugging Face's within 1e-4; its tokenizer gives GPT-2's ids; it loads from
// the Hub (intercepted here: the Hub is unreachable) with the size first, progress and Cache
// Storage, from local files, and with a split embedding; and every bad source says why.

import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync, copyFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { launch, serveDist, open, waitForPrediction, reference, maxAbsDiff, screenshot, FIXTURES, ROOT, TOL } from './lib.mjs';
import { serve } from './server.mjs';

const HUB = 'https://huggingface.co/openai-community/gpt2/resolve/main/';
const IOI = 'When Mary and John went to the store, John gave a drink to';

let server;
before(async () => {
  server = await serveDist();
});
after(async () => {
  await server.close();
});

async function checkReferenceLogits(page, state, label) {
  const ref = reference('tiny');
  const prompt = ref.meta.prompts[0];
  assert.equal(prompt.text, IOI);
  assert.deepEqual(state.prediction.tokens.map((t) => t.id), prompt.tokens);
  const err = maxAbsDiff(state.prediction.logits, ref.logits(0));
  console.log(`${label}: max abs error of the page's logits vs HF: ${err.toExponential(2)}`);
  assert.ok(err <= TOL, `${label}: ${err}`);
  const rows = await page.locator('#top tbody tr').count();
  assert.equal(rows, 10);
  // The shown top token is the reference's arg-max.
  assert.equal(state.prediction.top[0].id, prompt.top10[0]);
}

test('WebGPU: the page shows the fixture model\'s next tokens, equal to the reference', async () => {
  const context = await launch({ webgpu: true });
  try {
    const { page, problems } = await open(context, `${server.url}?model=tiny`);
    const state = await waitForPrediction(page);
    assert.equal(state.backend.kind, 'wgpu', JSON.stringify(state.backend));
    assert.match(await page.locator('#backend').textContent(), /WebGPU/);
    assert.equal(await page.locator('#backend-warning').isHidden(), true);
    await checkReferenceLogits(page, state, 'WebGPU');

    // The tokenizer in the page gives GPT-2's ids.
    await page.locator('#bos').uncheck();
    await page.locator('#clean').fill(' Mary John');
    await page.waitForFunction(() => document.querySelectorAll('#clean-tokens li').length === 2);
    const titles = await page.locator('#clean-tokens li').evaluateAll((lis) => lis.map((li) => li.title));
    assert.deepEqual(titles, ['position 0, id 5335', 'position 1, id 1757']);
    assert.deepEqual(await page.locator('#clean-tokens li').allTextContents(), ['␣Mary', '␣John']);
    await screenshot(page, 'step1-webgpu');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

test('no WebGPU: the page falls back to the CPU backend, says so, and gives the same numbers', async () => {
  const context = await launch({ webgpu: false });
  try {
    const { page, problems } = await open(context, `${server.url}?model=tiny`);
    const state = await waitForPrediction(page);
    assert.equal(state.backend.kind, 'cpu');
    assert.match(await page.locator('#backend-warning').textContent(), /WebGPU is not available.*CPU/);
    await checkReferenceLogits(page, state, 'CPU fallback');
    await screenshot(page, 'step1-cpu-fallback');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

/** Serves the fixture model at the Hub's URL; `mode` breaks it in one way. Counts downloads (GETs). */
async function fakeHub(context, mode = 'ok') {
  const hits = {};
  // The menu asks the Hub for the size of every GPT-2 of the family; only small is served here.
  await context.route('https://huggingface.co/openai-community/gpt2-*/**', (route) =>
    route.fulfill({ status: 404, body: 'Entry not found', headers: { 'access-control-allow-origin': '*' } }),
  );
  await context.route(`${HUB}**`, async (route) => {
    const name = route.request().url().slice(HUB.length);
    if (route.request().method() === 'GET') hits[name] = (hits[name] ?? 0) + 1;
    const cors = { 'access-control-allow-origin': '*', 'access-control-expose-headers': 'content-length' };
    if (mode === '404') return route.fulfill({ status: 404, body: 'Entry not found', headers: cors });
    if (mode === 'html' && name === 'model.safetensors') {
      return route.fulfill({ status: 200, body: '<!doctype html><title>Sign in</title>', headers: cors });
    }
    if (mode === 'cut' && name === 'model.safetensors') {
      // The file ends early, and nothing says so before the last byte (no content-length).
      const body = readFileSync(join(FIXTURES, 'models', 'tiny', name));
      return route.fulfill({ status: 200, body: body.subarray(0, body.length - 1000), headers: cors });
    }
    try {
      const body = readFileSync(join(FIXTURES, 'models', 'tiny', name));
      return route.fulfill({ status: 200, body, headers: { ...cors, 'content-length': String(body.length) } });
    } catch {
      return route.fulfill({ status: 404, body: 'Entry not found', headers: cors });
    }
  });
  return hits;
}

async function loadFromHub(page) {
  await page.locator('input[name="source"][value="hub"]').check();
  await page.waitForFunction(() => /download|cache/.test(document.querySelector('#hub-size').textContent));
  const sizeLine = await page.locator('#hub-size').textContent();
  await page.evaluate(() => {
    window.patchbay.prediction = null;
    window.patchbay.errors = [];
  });
  await page.locator('#load').click();
  return sizeLine;
}

test('GPT-2 small from the Hub: size before download, progress, then Cache Storage on the next visit', async () => {
  const context = await launch({ webgpu: false });
  try {
    const hits = await fakeHub(context);
    const { page, problems } = await open(context, server.url);
    await waitForPrediction(page);
    const size = readFileSync(join(FIXTURES, 'models', 'tiny', 'model.safetensors')).length;
    const sizeLine = await loadFromHub(page);
    assert.match(sizeLine, new RegExp(`${(size / 1e6).toFixed(1)} MB download`));
    const state = await waitForPrediction(page);
    assert.match(await page.locator('#model-status').textContent(), /3 layers.*\(downloaded\)/);
    assert.match(await page.locator('#progress-text').textContent(), /model\.safetensors: 3\.3 MB/);
    assert.equal(hits['model.safetensors'], 1);
    assert.ok(maxAbsDiff(state.prediction.logits, reference('tiny').logits(0)) <= TOL);

    // A second visit: the weights come from Cache Storage, not the network.
    await page.reload();
    await waitForPrediction(page);
    const cachedLine = await loadFromHub(page);
    assert.match(cachedLine, /in this browser's cache/);
    await waitForPrediction(page);
    assert.match(await page.locator('#model-status').textContent(), /from the browser cache/);
    assert.equal(hits['model.safetensors'], 1, 'downloaded once only');
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});

for (const [mode, expected] of [
  ['404', /answered 404.*no such file/],
  ['html', /not a safetensors file.*HTML error page/],
  ['cut', /truncated.*tensor `/],
]) {
  test(`a Hub download that fails (${mode}) gets a clear message next to the model controls`, async () => {
    const context = await launch({ webgpu: false });
    try {
      await fakeHub(context, mode);
      const { page } = await open(context, server.url);
      await waitForPrediction(page);
      await loadFromHub(page);
      await page.waitForFunction(() => window.patchbay.errors.length > 0);
      const message = await page.locator('#model-error').textContent();
      assert.match(message, expected);
      assert.equal(await page.locator('#model-error').isVisible(), true);
      // What did not load is not kept for the next visit.
      const cached = await page.evaluate(async () => (await (await caches.open('patchbay-models-v1')).keys()).map((r) => r.url));
      assert.deepEqual(cached.filter((url) => url.endsWith('model.safetensors')), []);
      if (mode === '404') await screenshot(page, 'step1-error-404');
    } finally {
      await context.close();
    }
  });
}

/** Loads the model folder at `url` through the URL source. */
async function loadFromUrl(page, url) {
  await page.locator('input[name="source"][value="url"]').check();
  await page.locator('#model-url').fill(url);
  await page.evaluate(() => {
    window.patchbay.prediction = null;
    window.patchbay.errors = [];
  });
  await page.locator('#load').click();
  await page.waitForFunction(() => window.patchbay.prediction || window.patchbay.errors.length);
}

test('a URL: loads from another origin that allows it, and explains 404s and CORS refusals', async () => {
  const models = join(FIXTURES, 'models');
  const open_ = await serve(models, 0, { cors: true });
  const closed = await serve(models, 0, { cors: false });
  const context = await launch({ webgpu: false });
  try {
    const { page } = await open(context, server.url);
    await waitForPrediction(page);

    await loadFromUrl(page, `${open_.url}tiny-prefixed/`);
    const state = await page.evaluate(() => window.patchbay);
    assert.equal(state.model.n_layer, 2, state.errors.join());
    assert.ok(maxAbsDiff(state.prediction.logits, reference('tiny-prefixed').logits(0)) <= TOL);

    await loadFromUrl(page, `${open_.url}nowhere/`);
    assert.match(await page.locator('#model-error').textContent(), /nowhere\/config\.json answered 404 Not Found \(no such file/);

    await loadFromUrl(page, `${closed.url}tiny/model.safetensors`);
    assert.match(await page.locator('#model-error').textContent(), /does not allow this page to read it \(CORS\)/);
    await screenshot(page, 'step1-error-cors');

    await loadFromUrl(page, 'not a url');
    assert.match(await page.locator('#model-error').textContent(), /"not a url" is not a URL/);
  } finally {
    await context.close();
    await open_.close();
    await closed.close();
  }
});

/** A random Hub-layout checkpoint whose 19.3 MB token embedding exceeds a 16 MiB binding. */
function randomCheckpoint(dir) {
  // Heads 64 wide, as in every OpenAI GPT-2, so that the page can read the shape without config.json.
  const [nLayer, nHead, d, nPos, vocab] = [2, 2, 128, 16, 50257];
  let seed = 12345;
  const rand = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648 - 0.5;
  };
  const tensors = [];
  const add = (name, shape, scale, offset = 0) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const values = new Float32Array(n);
    for (let i = 0; i < n; i++) values[i] = offset + scale * rand();
    tensors.push([name, shape, values]);
  };
  const s = 1 / Math.sqrt(d);
  add('wte.weight', [vocab, d], 8 * s);
  add('wpe.weight', [nPos, d], 3 * s);
  for (let l = 0; l < nLayer; l++) {
    for (const ln of ['ln_1', 'ln_2']) {
      add(`h.${l}.${ln}.weight`, [d], 0.3, 1);
      add(`h.${l}.${ln}.bias`, [d], 0.3);
    }
    for (const [name, din, dout] of [['attn.c_attn', d, 3 * d], ['attn.c_proj', d, d], ['mlp.c_fc', d, 4 * d], ['mlp.c_proj', 4 * d, d]]) {
      add(`h.${l}.${name}.weight`, [din, dout], 4 / Math.sqrt(din));
      add(`h.${l}.${name}.bias`, [dout], 0.3);
    }
  }
  add('ln_f.weight', [d], 0.3, 1);
  add('ln_f.bias', [d], 0.3);
  const header = {};
  let offset = 0;
  for (const [name, shape, values] of tensors) {
    header[name] = { dtype: 'F32', shape, data_offsets: [offset, offset + values.byteLength] };
    offset += values.byteLength;
  }
  let json = JSON.stringify(header);
  json += ' '.repeat((8 - (json.length % 8)) % 8);
  const out = Buffer.alloc(8 + json.length + offset);
  out.writeBigUInt64LE(BigInt(json.length), 0);
  out.write(json, 8, 'utf8');
  let at = 8 + json.length;
  for (const [, , values] of tensors) {
    Buffer.from(values.buffer).copy(out, at);
    at += values.byteLength;
  }
  writeFileSync(join(dir, 'model.safetensors'), out);
  writeFileSync(
    join(dir, 'config.json'),
    JSON.stringify({ n_layer: nLayer, n_head: nHead, n_embd: d, n_positions: nPos, vocab_size: vocab }),
  );
}

test('local files on a WebGPU device limited to 16 MiB bindings: the embedding is split and the logits equal the CLI\'s, with or without config.json', async () => {
  const dir = mkdtempSync(join(tmpdir(), 'patchbay-split-'));
  randomCheckpoint(dir);
  // The CLI needs a tokenizer file; the page uses the GPT-2 tokenizer it ships with.
  const cliDir = mkdtempSync(join(tmpdir(), 'patchbay-split-cli-'));
  for (const f of ['model.safetensors', 'config.json']) copyFileSync(join(dir, f), join(cliDir, f));
  copyFileSync(join(FIXTURES, 'models', 'tiny', 'tokenizer.json'), join(cliDir, 'tokenizer.json'));
  const cli = JSON.parse(
    execFileSync(join(ROOT, 'target', 'release', 'patchbay'), ['logits', '--model', cliDir, '--prompt', IOI, '--prepend-bos', '--json']),
  );

  const context = await launch({ webgpu: true });
  try {
    const { page, problems } = await open(context, `${server.url}?bindingCap=${16 << 20}`);
    await waitForPrediction(page);
    assert.equal((await page.evaluate(() => window.patchbay.backend)).max_binding_bytes, 16 << 20);
    await page.locator('input[name="source"][value="file"]').check();
    await page.locator('#files').setInputFiles([join(dir, 'model.safetensors'), join(dir, 'config.json')]);
    await page.evaluate(() => {
      window.patchbay.prediction = null;
    });
    await page.locator('#load').click();
    const state = await waitForPrediction(page);
    assert.equal(state.model.embedding_blocks, 2);
    assert.match(await page.locator('#model-status').textContent(), /GPT-2 tokenizer from the app/);
    assert.deepEqual(state.prediction.tokens.map((t) => t.id), cli.tokens);
    const err = maxAbsDiff(state.prediction.logits, cli.logits);
    console.log(`split embedding on WebGPU vs native CLI: max abs error ${err.toExponential(2)}`);
    assert.ok(err <= TOL, `${err}`);

    // The weights alone: the shape is read from the file's header, and the logits are the same.
    await page.locator('#files').setInputFiles([join(dir, 'model.safetensors')]);
    await page.evaluate(() => {
      window.patchbay.prediction = null;
    });
    await page.locator('#load').click();
    const inferred = await waitForPrediction(page);
    assert.match(await page.locator('#model-status').textContent(), /no config\.json: shape read from the weights/);
    assert.deepEqual(inferred.prediction.logits, state.prediction.logits, 'the same model without its config.json');

    // A truncated local file names the tensor it cuts off.
    const cut = join(dir, 'cut.safetensors');
    writeFileSync(cut, readFileSync(join(dir, 'model.safetensors')).subarray(0, 5_000_000));
    await page.locator('#files').setInputFiles([cut, join(dir, 'config.json')]);
    await page.locator('#load').click();
    await page.waitForFunction(() => window.patchbay.errors.length > 0);
    assert.match(await page.locator('#model-error').textContent(), /truncated.*tensor `wte\.weight`/);
    assert.deepEqual(problems, []);
  } finally {
    await context.close();
  }
});
