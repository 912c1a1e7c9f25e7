// Patchbay's page: wires the controls to the model worker. All numbers come from the worker;
// this file only shows them.

import { $, el, say, formatBytes } from './dom.js';
import { WorkerClient } from './worker-client.js';

/** GPT-2 small on the Hugging Face Hub. */
const HUB_BASE = 'https://huggingface.co/openai-community/gpt2/resolve/main/';
/** Size of its model.safetensors, shown if the Hub does not say (HEAD blocked). */
const HUB_WEIGHTS_BYTES = 548105171;
const FIXTURE_BASE = new URL('../models/fixture/', import.meta.url).href;

const params = new URLSearchParams(location.search);
const worker = new WorkerClient(new URL('./worker.js', import.meta.url));

/** State the end-to-end tests read. */
const state = { backend: null, model: null, prediction: null, errors: [] };
window.patchbay = state;

worker.onProgress = ({ what, loaded, total, done }) => {
  const bar = $('#progress');
  bar.hidden = false;
  bar.max = total || 1;
  bar.value = total ? loaded : 0;
  const amount = total ? `${formatBytes(loaded)} of ${formatBytes(total)}` : formatBytes(loaded);
  $('#progress-text').textContent = done ? `${what}: ${formatBytes(loaded)}` : `Downloading ${what}: ${amount}`;
};

function showError(node, error) {
  const message = error?.message ?? String(error);
  say(node, message);
  state.errors.push(message);
}

function source() {
  return document.querySelector('input[name="source"]:checked').value;
}

async function startBackend() {
  const useGpu = params.get('backend') !== 'cpu';
  const cap = params.get('bindingCap');
  const info = await worker.call('init', { useGpu, bindingCap: cap ? Number(cap) : null });
  state.backend = info;
  $('#backend').textContent =
    info.kind === 'wgpu' ? `Running on ${info.description}` : `Running on the CPU (${info.description})`;
  $('#backend').dataset.kind = info.kind;
  if (info.fallback_reason) {
    say(
      $('#backend-warning'),
      `WebGPU is not available: ${info.fallback_reason}. Patchbay runs on the CPU instead, which is much slower for GPT-2 small.`,
    );
  }
}

async function showHubSize() {
  const line = $('#hub-size');
  line.textContent = 'Checking the size of GPT-2 small…';
  const probe = await worker.call('probe', { url: HUB_BASE + 'model.safetensors', knownSize: HUB_WEIGHTS_BYTES });
  line.textContent = probe.cached
    ? `GPT-2 small (${formatBytes(probe.size)}) is in this browser's cache: loading it needs no download.`
    : `GPT-2 small is a ${formatBytes(probe.size)} download (kept in this browser's cache afterwards).`;
  $('#load').textContent = probe.cached ? 'Load from cache' : `Download ${formatBytes(probe.size)} and load`;
}

function onSourceChange() {
  const kind = source();
  $('#hub-details').hidden = kind !== 'hub';
  $('#file-details').hidden = kind !== 'file';
  $('#url-details').hidden = kind !== 'url';
  $('#load').textContent = 'Load';
  say($('#model-error'), '');
  if (kind === 'hub') showHubSize().catch((e) => showError($('#model-error'), e));
}

/** A folder request from what the user typed: a folder URL, or the URL of a .safetensors file. */
function folderOf(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`"${text}" is not a URL; give one such as ${HUB_BASE}`);
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new Error('Only http and https URLs can be loaded.');
  if (url.pathname.endsWith('.safetensors')) {
    return { kind: 'folder', base: new URL('.', url).href, weights: url.href };
  }
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return { kind: 'folder', base: url.href };
}

async function loadModel() {
  const kind = source();
  say($('#model-error'), '');
  $('#progress-text').textContent = '';
  let request;
  if (kind === 'fixture') request = { kind: 'folder', base: FIXTURE_BASE };
  else if (kind === 'hub') request = { kind: 'folder', base: HUB_BASE };
  else if (kind === 'url') request = folderOf($('#model-url').value.trim());
  else {
    const files = [...$('#files').files];
    if (files.length === 0) throw new Error('Choose the model files first.');
    request = { kind: 'files', files };
  }
  $('#load').disabled = true;
  $('#run').disabled = true;
  $('#model-status').textContent = 'Loading…';
  try {
    const { info, origin } = await worker.call('load', { source: request });
    state.model = info;
    $('#model-status').textContent =
      `Loaded ${info.n_layer} layers × ${info.n_head} heads, d_model ${info.n_embd}, ` +
      `context ${info.n_positions} (${origin}).`;
    $('#run').disabled = false;
  } catch (error) {
    $('#model-status').textContent = state.model ? 'The previous model is no longer loaded.' : '';
    state.model = null;
    throw error;
  } finally {
    $('#load').disabled = false;
    $('#progress').hidden = true;
  }
}

function renderTokens(tokens) {
  const list = $('#tokens');
  list.replaceChildren(
    ...tokens.map((t, i) => el('li', { text: t.text, attrs: { title: `position ${i}, id ${t.id}` }, classes: ['chip'] })),
  );
}

function renderTop(top) {
  const body = $('#top tbody');
  body.replaceChildren(
    ...top.map((p) => {
      const row = el('tr');
      row.append(el('td', { text: p.text, classes: ['token'] }), el('td', { text: String(p.id) }));
      const cell = el('td');
      const bar = el('span', { classes: ['bar'] });
      bar.style.setProperty('--p', String(p.prob));
      cell.append(bar, el('span', { text: ` ${(100 * p.prob).toFixed(2)}%` }));
      row.append(cell);
      return row;
    }),
  );
}

async function predict() {
  say($('#prompt-error'), '');
  $('#run').disabled = true;
  try {
    const result = await worker.call('predict', { text: $('#prompt').value, bos: $('#bos').checked, k: 10 });
    state.prediction = result;
    renderTokens(result.tokens);
    renderTop(result.top);
  } finally {
    $('#run').disabled = false;
  }
}

/** Keeps token chips in step with the prompt while typing. */
let tokenizeTimer;
function retokenize() {
  clearTimeout(tokenizeTimer);
  tokenizeTimer = setTimeout(async () => {
    if (!state.model) return;
    try {
      renderTokens(await worker.call('tokenize', { text: $('#prompt').value, bos: $('#bos').checked }));
      say($('#prompt-error'), '');
    } catch (error) {
      showError($('#prompt-error'), error);
    }
  }, 150);
}

function wire() {
  for (const radio of document.querySelectorAll('input[name="source"]')) radio.addEventListener('change', onSourceChange);
  $('#load').addEventListener('click', () =>
    loadModel()
      .then(() => predict())
      .catch((e) => showError($('#model-error'), e)),
  );
  $('#run').addEventListener('click', () => predict().catch((e) => showError($('#prompt-error'), e)));
  $('#prompt').addEventListener('input', retokenize);
  $('#bos').addEventListener('change', retokenize);
  window.addEventListener('unhandledrejection', (event) => showError($('#model-error'), event.reason));
}

async function main() {
  wire();
  if (params.has('prompt')) $('#prompt').value = params.get('prompt');
  await startBackend();
  await loadModel();
  await predict();
}

main().catch((error) => showError($('#model-error'), error));
