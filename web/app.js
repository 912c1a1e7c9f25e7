// Patchbay's page: wires the controls to the model worker. Every number comes from the worker
// (crates/web on crates/patching); this file only moves data and shows it, always as text.

import { $, el, say, formatBytes } from './dom.js';
import { WorkerClient } from './worker-client.js';
import { Editor, clearErrors, showFieldError } from './editor.js';
import { ResultsView } from './results.js';
import { CompareView } from './compare.js';
import { makeLink, readLink } from './share.js';
import { LESSONS } from './lessons.js';

/** GPT-2 small on the Hugging Face Hub. */
const HUB_ID = 'openai-community/gpt2';
const HUB_BASE = `https://huggingface.co/${HUB_ID}/resolve/main/`;
/** Size of its model.safetensors, shown if the Hub does not say (HEAD blocked). */
const HUB_WEIGHTS_BYTES = 548105171;
const params = new URLSearchParams(location.search);
/**
 * The models that ship with the app, in models/<name>/: patchbay-ioi (trained in the repo, the
 * default) and tiny (the test fixture, `?model=tiny`).
 */
const SHIPPED = { 'patchbay-ioi': 'patchbay-ioi: 3 layers, trained on IOI (offline, 8 MB)', tiny: 'tiny: the random test model (offline, 3 MB)' };
let EMBEDDED = SHIPPED[params.get('model')] ? params.get('model') : 'patchbay-ioi';
const embeddedBase = () => new URL(`../models/${EMBEDDED}/`, import.meta.url).href;
const worker = new WorkerClient(new URL('./worker.js', import.meta.url));

/** State the end-to-end tests read. */
const state = { backend: null, model: null, prediction: null, results: null, running: false, errors: [], runs: 0, timings: {} };
/** Milliseconds since the page started loading, for the page-load benchmark. */
const mark = (name) => {
  state.timings[name] ??= Math.round(performance.now());
};
window.patchbay = state;

const editor = new Editor(worker, { onChange: (check) => onSpecChecked(check) });
const resultsView = new ResultsView(worker, {
  inspect: (what) => inspect(what),
  drawn: (geometry) => {
    state.heatmap = geometry;
    mark('heatmap');
  },
});
const compareView = new CompareView(worker, (spec, label) => runSpec(spec, label));

function showError(node, error) {
  const message = error?.message ?? String(error);
  say(node, message);
  state.errors.push(message);
}

// ---------------------------------------------------------------- progress

let runStarted = 0;
worker.onProgress = (p) => {
  if (p.kind === 'run') {
    const bar = $('#run-progress');
    bar.hidden = false;
    bar.max = p.total || 1;
    bar.value = p.done;
    const rate = p.done / Math.max(p.elapsed, 1);
    const eta = p.done > 0 ? Math.max(0, (p.total - p.done) / rate / 1000) : null;
    const unit = p.stage.startsWith('setting') ? '' : ' patches';
    $('#run-status').textContent =
      `${p.stage}: ${p.done} of ${p.total}${unit}` + (eta === null ? '' : `, about ${eta < 60 ? `${eta.toFixed(0)} s` : `${(eta / 60).toFixed(1)} min`} left`);
    // A dataset's mean so far, redrawn as groups of prompts finish.
    if (p.partial && state.running === 'experiment') {
      resultsView.showPartial(p.partial, p.stage).catch(() => {});
      state.partials = (state.partials ?? 0) + 1;
    }
    return;
  }
  const bar = $('#progress');
  bar.hidden = false;
  bar.max = p.total || 1;
  bar.value = p.total ? p.loaded : 0;
  const amount = p.total ? `${formatBytes(p.loaded)} of ${formatBytes(p.total)}` : formatBytes(p.loaded);
  $('#progress-text').textContent = p.done ? `${p.what}: ${formatBytes(p.loaded)}` : `Downloading ${p.what}: ${amount}`;
};

// ---------------------------------------------------------------- backend and model

async function startBackend() {
  const useGpu = params.get('backend') !== 'cpu';
  const cap = params.get('bindingCap');
  const info = await worker.call('init', { useGpu, bindingCap: cap ? Number(cap) : null });
  state.backend = info;
  mark('backend');
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

function source() {
  return document.querySelector('input[name="source"]:checked').value;
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
  if (url.pathname.endsWith('.safetensors')) return { kind: 'folder', base: new URL('.', url).href, weights: url.href };
  if (!url.pathname.endsWith('/')) url.pathname += '/';
  return { kind: 'folder', base: url.href };
}

/** The model the chosen source gives: the worker's request and the spec's `model`. */
function chosenModel() {
  const kind = source();
  if (kind === 'fixture') return [{ kind: 'folder', base: embeddedBase() }, { embedded: EMBEDDED }];
  if (kind === 'hub') return [{ kind: 'folder', base: HUB_BASE }, { hub: HUB_ID }];
  if (kind === 'url') {
    const text = $('#model-url').value.trim();
    return [folderOf(text), { url: text }];
  }
  const files = [...$('#files').files];
  if (files.length === 0) throw new Error('Choose the model files first.');
  const weights = files.find((f) => f.name.endsWith('.safetensors'));
  return [{ kind: 'files', files }, { local: weights?.name ?? files[0].name }];
}

/** Cancels the running experiment, if any, and waits until it has stopped. */
async function stopRun() {
  if (!state.running) return;
  await worker.call('cancel');
  while (state.running) await new Promise((resolve) => setTimeout(resolve, 50));
}

async function loadModel() {
  say($('#model-error'), '');
  await stopRun();
  $('#progress-text').textContent = '';
  const [request, model] = chosenModel();
  $('#load').disabled = true;
  setRunnable(false);
  $('#model-status').textContent = 'Loading…';
  try {
    const { info, origin } = await worker.call('load', { source: request });
    state.model = { ...info, source: model };
    mark('model');
    predicted = null;
    editor.model = model;
    editor.modelReady = true;
    $('#model-status').textContent =
      `Loaded ${info.n_layer} layers × ${info.n_head} heads, d_model ${info.n_embd}, ` +
      `context ${info.n_positions} (${origin}).`;
    setRunnable(true);
    editor.schedule(0);
  } catch (error) {
    $('#model-status').textContent = state.model ? 'The previous model is no longer loaded.' : '';
    state.model = null;
    editor.modelReady = false;
    throw error;
  } finally {
    $('#load').disabled = false;
    $('#progress').hidden = true;
  }
}

function setRunnable(on) {
  for (const id of ['#run-experiment', '#compare-run', '#run', '#sensitivity-run']) $(id).disabled = !on || Boolean(state.running);
}

// ---------------------------------------------------------------- predictions

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
      const use = el('td');
      for (const [label, target] of [['r', '#answer'], ['r′', '#counter']]) {
        const b = el('button', { text: label, attrs: { type: 'button', title: `Use ${p.text} as ${label}` }, classes: ['small'] });
        b.addEventListener('click', () => {
          $(target).value = p.raw;
          editor.changed(target);
        });
        use.append(b);
      }
      row.append(cell, use);
      return row;
    }),
  );
}

let predicted = null;
async function predict(force = false) {
  const text = $('#clean').value;
  const bos = $('#bos').checked;
  const key = `${bos}|${text}`;
  if (!force && key === predicted) return;
  predicted = key;
  say($('#predict-error'), '');
  try {
    const result = await worker.call('predict', { text, bos, k: 10 });
    state.prediction = result;
    renderTop(result.top);
    editor.renderSuggestions(result.top);
  } catch (error) {
    showError($('#predict-error'), error);
  }
}

function onSpecChecked(check) {
  if (check) predict();
}

// ---------------------------------------------------------------- running

let pendingSpec = null;

/** Runs a spec in the worker with progress and Cancel; resolves to its results. */
function runSpec(spec, label = 'experiment') {
  return runInWorker('run', { spec }, label);
}

/** Runs a long worker command with the progress bar and Cancel. */
async function runInWorker(cmd, args, label) {
  if (state.running) throw new Error('An experiment is already running.');
  state.running = label === 'experiment' ? 'experiment' : label;
  setRunnable(false);
  $('#cancel').hidden = false;
  $('#run-progress').hidden = false;
  $('#run-progress').value = 0;
  $('#run-status').textContent = `Starting ${label}…`;
  runStarted = performance.now();
  try {
    const results = await worker.call(cmd, args);
    state.runs += 1;
    $('#run-status').textContent = `Finished ${label} in ${((performance.now() - runStarted) / 1000).toFixed(1)} s.`;
    return results;
  } catch (error) {
    $('#run-status').textContent = error.message === 'the run was cancelled' ? 'Cancelled.' : '';
    throw error;
  } finally {
    state.running = false;
    $('#cancel').hidden = true;
    $('#run-progress').hidden = true;
    setRunnable(Boolean(state.model));
  }
}

/** Patches a spec would run, to warn before long runs on the CPU. */
function patchCount(spec, check) {
  const len = check?.[0]?.clean.length ?? 1;
  const m = state.model;
  const heads = ['z', 'q', 'k', 'v', 'pattern'].includes(spec.target.component) && spec.target.heads !== 'all' ? m.n_head : 1;
  const positions = spec.target.positions === 'each' ? len : 1;
  return m.n_layer * heads * positions * spec.prompts.length * (spec.corruption.method === 'gn' ? spec.corruption.samples : 1);
}

async function runExperiment(confirmed = false) {
  clearErrors();
  say($('#run-error'), '');
  $('#cpu-confirm').hidden = true;
  let spec;
  try {
    spec = editor.toSpec();
    const check = await worker.call('check', { spec });
    const heavy = state.backend.kind === 'cpu' && state.model.n_embd >= 512 && patchCount(spec, check) > 40;
    if (heavy && !confirmed) {
      pendingSpec = spec;
      $('#cpu-confirm-text').textContent =
        `This runs about ${patchCount(spec, check)} patched passes of a ${state.model.n_layer}-layer model on the CPU, ` +
        'which can take several minutes. WebGPU would be much faster.';
      $('#cpu-confirm').hidden = false;
      $('#run-anyway').focus();
      return;
    }
    const results = await runSpec(spec);
    mark('results');
    state.results = results;
    $('#share').disabled = false;
    resultsView.classes = await worker.call('classes', { spec: results.spec }).catch(() => null);
    await resultsView.show(results);
  } catch (error) {
    if (error.message !== 'the run was cancelled') {
      showFieldError(error);
      state.errors.push(error.message);
    }
  }
}

// ---------------------------------------------------------------- looking inside a cell

async function inspect({ results, cell, at, patch }) {
  const detail = $('#detail');
  const body = $('#detail-body');
  detail.hidden = false;
  body.replaceChildren();
  say($('#detail-status'), '');
  const component = results.spec.target.component;
  try {
    if (at.head_index !== undefined && component !== 'path') {
      $('#detail-title').textContent = `Attention pattern of head ${at.layer}.${at.head_index}`;
      say($('#detail-status'), `Running the clean, corrupted and patched runs of: ${patch}…`);
      const p = await worker.call('headPatterns', { spec: results.spec, cell, layer: Number(at.layer), head: Number(at.head_index) });
      say($('#detail-status'), `Rows are query positions, columns key positions; patch: ${patch}.`);
      const axes = [
        { name: 'dest_pos', labels: p.tokens },
        { name: 'src_pos', labels: p.tokens },
      ];
      for (const [name, grid] of [['clean', p.clean], ['corrupted', p.corrupted], ['patched', p.patched]]) {
        const figure = el('figure');
        const canvas = el('canvas', { attrs: { 'aria-label': `${name} run attention pattern` } });
        figure.append(el('figcaption', { text: `${name} run` }), canvas);
        body.append(figure);
        const { HeatmapView } = await import('./heatmap-view.js');
        await new HeatmapView(canvas, worker).show({ grid, axes, title: `${name}: head ${at.layer}.${at.head_index}`, label: 'attention', limit: 1 });
      }
      state.detail = p;
    } else if ((at.pos ?? at.dest_pos) !== undefined) {
      at.position = at.pos ?? at.dest_pos;
      const position = results.axes.find((a) => a.name === 'pos' || a.name === 'dest_pos').labels.indexOf(at.position);
      $('#detail-title').textContent = `Heads at position "${at.position}"`;
      const spec = structuredClone(results.spec);
      spec.target = { component: 'z', positions: [position], heads: 'each' };
      spec.window = null;
      spec.attribution = false;
      const heads = await runSpec(spec, `heads at position ${position}`);
      say($('#detail-status'), `Each head's output patched alone at position "${at.position}", every layer.`);
      const canvas = el('canvas', { attrs: { 'aria-label': 'per-head breakdown' } });
      body.append(canvas);
      const { HeatmapView } = await import('./heatmap-view.js');
      const flat = (g) => (Array.isArray(g) ? g.flatMap(flat) : [g]);
      const limit = Math.max(1e-12, ...flat(heads.grid).map(Math.abs));
      await new HeatmapView(canvas, worker).show({ grid: heads.grid, axes: heads.axes, title: `heads at "${at.position}"`, label: 'effect', limit });
      state.detail = heads;
    } else {
      $('#detail-title').textContent = patch;
      say($('#detail-status'), 'This cell covers every position and head; pick a per-position or per-head cell to look inside.');
    }
  } catch (error) {
    showError($('#detail-status'), error);
  }
}

// ---------------------------------------------------------------- method sensitivity

async function runSensitivity() {
  say($('#sensitivity-error'), '');
  const checked = (name) => [...document.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);
  const spec = editor.toSpec();
  const ioi = spec.dataset?.task === 'ioi';
  const corruptions = checked('sens-corruption')
    .filter((c) => ioi || c === 'str:s2' || c === 'gn:s2')
    .map((c) => {
      const [method, names] = c.split(':');
      return { [method]: ioi ? names : null };
    });
  const seeds = $('#sens-seeds')
    .value.split(/[\s,]+/)
    .filter(Boolean)
    .map(Number);
  if (seeds.some((s) => !Number.isInteger(s) || s < 0)) throw new Error('Seeds are whole numbers, separated by commas.');
  const choices = {
    corruptions,
    metrics: checked('sens-metric'),
    directions: checked('sens-direction'),
    seeds: seeds.length ? seeds : [0],
    samples: Number($('#sens-samples').value) || 10,
  };
  const result = await runInWorker('sensitivity', { spec, choices }, 'sensitivity');
  state.sensitivity = result;
  $('#sensitivity').hidden = false;
  const labels = result.cases.map((c) => c.label);
  const table = $('#class-table');
  table.replaceChildren();
  if (result.table) {
    const head = el('tr');
    head.append(el('th', { text: 'class', attrs: { scope: 'col' } }), el('th', { text: 'heads', attrs: { scope: 'col' } }));
    for (const l of labels) head.append(el('th', { text: l, attrs: { scope: 'col' } }));
    table.append(head);
    const name = ([l, h]) => `${l}.${h}`;
    for (const row of result.table) {
      const tr = el('tr');
      tr.append(el('th', { text: row.class, attrs: { scope: 'row' } }), el('td', { text: row.heads.map(name).join(' ') }));
      for (const found of row.detected) {
        tr.append(el('td', { text: found.length ? `${found.map(name).join(' ')} (${found.length}/${row.heads.length})` : '–', classes: found.length ? ['hit'] : [] }));
      }
      table.append(tr);
    }
    $('#class-table-note').textContent = 'Each cell lists the class\'s heads detected under that setting.';
  } else {
    $('#class-table-note').textContent = 'No known head classes for this model and target (Table 1 needs a layer × head grid of GPT-2 small or patchbay-ioi).';
  }
  const axes = [
    { name: 'setting', labels },
    { name: 'setting', labels },
  ];
  const { HeatmapView } = await import('./heatmap-view.js');
  await new HeatmapView($('#jaccard'), worker).show({ grid: result.jaccard, axes, title: 'Jaccard of detected sets', label: 'Jaccard', limit: 1 });
  const rho = result.spearman.map((row) => row.map((v) => (v === null ? NaN : v)));
  await new HeatmapView($('#spearman'), worker).show({ grid: rho, axes, title: 'Spearman of grids', label: 'rho', limit: 1 });
}

// ---------------------------------------------------------------- exports and sharing

function download(name, blob) {
  const url = URL.createObjectURL(blob);
  const a = el('a', { attrs: { href: url, download: name } });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
}

async function exportAs(kind) {
  const results = state.results;
  if (!results) return;
  const view = $('#view').value;
  const json = (v) => new Blob([JSON.stringify(v, null, 2)], { type: 'application/json' });
  switch (kind) {
    case 'png':
      return download('patchbay-heatmap.png', await resultsView.exportPng());
    case 'svg':
      return download('patchbay-heatmap.svg', new Blob([resultsView.exportSvg()], { type: 'image/svg+xml' }));
    case 'csv':
      return download(`patchbay-${view}.csv`, new Blob([await worker.call('csv', { results, which: view })], { type: 'text/csv' }));
    case 'json':
      return download('patchbay-results.json', json(results));
    case 'spec':
      return download('patchbay-spec.json', json(results.spec));
    case 'python':
      return download('patchbay_experiment.py', new Blob([await worker.call('script', { spec: results.spec })], { type: 'text/x-python' }));
  }
}

async function share() {
  const spec = state.results?.spec ?? editor.toSpec();
  const url = await makeLink(spec, $('#share-results').checked ? state.results : null);
  $('#share-panel').hidden = false;
  $('#share-url').value = url;
  $('#share-length').textContent = `The link is ${url.length.toLocaleString('en')} characters long.`;
  state.link = url;
}

async function copyLink() {
  try {
    await navigator.clipboard.writeText($('#share-url').value);
    $('#copy-status').textContent = 'Copied.';
  } catch {
    $('#share-url').select();
    $('#copy-status').textContent = 'Press Ctrl+C (⌘C) to copy the selected link.';
  }
}

// ---------------------------------------------------------------- lessons

let lesson = null;

function lessonFromHash() {
  const hash = new URLSearchParams(location.hash.replace(/^#/, ''));
  if (!hash.has('lesson')) return null;
  const n = Number(hash.get('lesson'));
  return Number.isInteger(n) && n >= 1 && n <= LESSONS.length ? n - 1 : 0;
}

function setPresent(on) {
  document.body.classList.toggle('present', on);
  $('#present-toggle').setAttribute('aria-pressed', String(on));
  $('#present-toggle').textContent = on ? 'Leave presenter mode' : 'Presenter mode';
}

function lessonHash(index, present = document.body.classList.contains('present')) {
  return `#lesson=${index + 1}${present ? '&present=1' : ''}`;
}

/** Shows lesson `index` and runs its experiment (and its comparison). */
async function showLesson(index) {
  lesson = index;
  const step = LESSONS[index];
  $('#lessons').hidden = false;
  $('#lesson-step').textContent = `Lesson step ${index + 1} of ${LESSONS.length}`;
  $('#lesson-title').textContent = step.title;
  $('#lesson-text').textContent = step.text;
  $('#lesson-claim').textContent = step.claim;
  $('#lesson-question').textContent = step.question;
  $('#lesson-prev').disabled = index === 0;
  $('#lesson-next').disabled = index === LESSONS.length - 1;
  $('#lesson-link').href = lessonHash(index, false);
  history.replaceState(null, '', lessonHash(index));
  if (state.model?.source.embedded !== 'patchbay-ioi') {
    say($('#lesson-status'), 'The lessons are written for the model that ships with the app (patchbay-ioi): its numbers differ on other models.');
  } else {
    say($('#lesson-status'), '');
  }
  state.lesson = null;
  editor.fromSpec({ version: 1, model: editor.model, prepend_bos: true, seed: 0, ...structuredClone(step.spec) });
  await stopRun();
  await runExperiment(true);
  state.comparison = null;
  $('#compare').hidden = true;
  if (step.compare) {
    const spec = editor.toSpec();
    const check = await worker.call('check', { spec: { ...spec, corruption: { method: 'str' } } });
    if (step.compare.kind) $('#compare-kind').value = step.compare.kind;
    state.comparison = await compareView.compare(spec, step.compare.kind ?? step.compare, check[0].corrupted_positions);
    $('#compare-panel').scrollIntoView({ block: 'nearest' });
  }
  state.lesson = { index, results: state.results, comparison: state.comparison };
}

function lessonKeys(event) {
  if (lesson === null || $('#lessons').hidden) return;
  if (event.target.closest('input, textarea, select, canvas')) return;
  const move = { ArrowRight: 1, PageDown: 1, ArrowLeft: -1, PageUp: -1 }[event.key];
  if (!move) return;
  const next = lesson + move;
  if (next < 0 || next >= LESSONS.length || state.running) return;
  event.preventDefault();
  showLesson(next).catch((e) => showError($('#run-error'), e));
}

// ---------------------------------------------------------------- start

function wire() {
  for (const radio of document.querySelectorAll('input[name="source"]')) radio.addEventListener('change', onSourceChange);
  $('#load').addEventListener('click', () =>
    loadModel()
      .then(() => {
        // A share link whose model had to be loaded first runs once it is.
        if (!state.pendingLinkRun) return;
        state.pendingLinkRun = false;
        return runExperiment(true);
      })
      .catch((e) => showError($('#model-error'), e)),
  );
  $('#run').addEventListener('click', () => predict(true));
  $('#run-experiment').addEventListener('click', () => runExperiment());
  $('#run-anyway').addEventListener('click', () => runExperiment(true));
  $('#cancel').addEventListener('click', () => worker.call('cancel'));
  $('#compare-run').addEventListener('click', async () => {
    say($('#compare-error'), '');
    try {
      const spec = editor.toSpec();
      // The tokens STR swaps are the ones GN noises: take them from an STR check of the prompts.
      const check = await worker.call('check', { spec: { ...spec, corruption: { method: 'str' } } });
      await compareView.compare(spec, $('#compare-kind').value, check[0].corrupted_positions);
      state.comparison = compareView.last;
    } catch (error) {
      if (error.message !== 'the run was cancelled') showError($('#compare-error'), error);
    }
  });
  $('#sensitivity-run').addEventListener('click', () =>
    runSensitivity().catch((error) => {
      if (error.message !== 'the run was cancelled') showError($('#sensitivity-error'), error);
    }),
  );
  for (const b of document.querySelectorAll('[data-export]')) {
    b.addEventListener('click', () => exportAs(b.dataset.export).catch((e) => showError($('#run-error'), e)));
  }
  $('#share').addEventListener('click', () => share().catch((e) => showError($('#link-error'), e)));
  $('#share-results').addEventListener('change', () => share().catch((e) => showError($('#link-error'), e)));
  $('#copy-link').addEventListener('click', copyLink);
  $('#lessons-toggle').addEventListener('click', () => {
    if ($('#lessons').hidden) showLesson(lesson ?? 0).catch((e) => showError($('#run-error'), e));
    else $('#lessons').hidden = true;
  });
  $('#lesson-prev').addEventListener('click', () => showLesson(lesson - 1).catch((e) => showError($('#run-error'), e)));
  $('#lesson-next').addEventListener('click', () => showLesson(lesson + 1).catch((e) => showError($('#run-error'), e)));
  $('#present-toggle').addEventListener('click', () => {
    setPresent(!document.body.classList.contains('present'));
    history.replaceState(null, '', lessonHash(lesson ?? 0));
  });
  document.addEventListener('keydown', lessonKeys);
  window.addEventListener('unhandledrejection', (event) => showError($('#run-error'), event.reason));
}

/** Reads a share link, if the URL carries one: the spec (checked) and any results. */
async function openLink() {
  let link;
  try {
    link = await readLink();
  } catch (error) {
    showError($('#link-error'), error);
    return null;
  }
  if (!link) return null;
  try {
    const spec = await worker.call('parseSpec', { spec: link.spec });
    return { spec, results: link.results };
  } catch (error) {
    showError($('#link-error'), new Error(`This link's experiment cannot be opened: ${error.message}`));
    return null;
  }
}

async function main() {
  wire();
  $('#embedded-label').textContent = `The model that ships with the app: ${SHIPPED[EMBEDDED]}`;
  await startBackend();
  const lessonIndex = lessonFromHash();
  if (lessonIndex !== null) {
    setPresent(new URLSearchParams(location.hash.slice(1)).has('present'));
    await loadModel();
    await showLesson(lessonIndex);
    return;
  }
  const link = await openLink();
  if (link?.results) {
    state.results = link.results;
    await resultsView.show(link.results, 'These results came with the link; run the experiment to reproduce them.');
    $('#share').disabled = false;
  }
  const model = link?.spec.model;
  if (SHIPPED[model?.embedded]) {
    EMBEDDED = model.embedded;
    $('#embedded-label').textContent = `The model that ships with the app: ${SHIPPED[EMBEDDED]}`;
  }
  if (model?.hub) {
    document.querySelector('input[name="source"][value="hub"]').checked = true;
    onSourceChange();
    say($('#link-status'), 'This link uses GPT-2 small: load it (above) to run the experiment.');
  } else if (model?.url) {
    document.querySelector('input[name="source"][value="url"]').checked = true;
    onSourceChange();
    $('#model-url').value = model.url;
    say($('#link-status'), 'This link loads its model from a URL: press Load to fetch it.');
  } else if (model?.local) {
    document.querySelector('input[name="source"][value="file"]').checked = true;
    onSourceChange();
    say($('#link-status'), `This link used a local file (${model.local}): choose it above to run the experiment.`);
  }
  if (link) editor.fromSpec(link.spec);
  else editor.applyPreset('ioi');
  state.pendingLinkRun = Boolean(link && !link.results && model && !model.embedded);
  if (!model || model.embedded) {
    await loadModel();
    if (link?.results) return;
    await runExperiment(true);
  }
}

main().catch((error) => showError($('#model-error'), error));
