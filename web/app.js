// Patchbay's page: wires the controls to the model worker. Every number comes from the worker
// (crates/web on crates/patching); this file only moves data and shows it, always as text.

import { $, el, say, formatBytes } from './dom.js';
import { WorkerPool } from './worker-pool.js';
import { Editor, clearErrors, showFieldError } from './editor.js';
import { ResultsView } from './results.js';
import { CompareView } from './compare.js';
import { isLink, makeLink, readLink } from './share.js';
import { modelName, parseSpecText, sameModel, specText } from './spec.js';
import { LESSONS } from './lessons.js';
import { CircuitPanel } from './circuit.js';

const params = new URLSearchParams(location.search);
/**
 * The models that ship with the app, in models/<name>/: patchbay-ioi (trained in the repo, the
 * default) and tiny (the test fixture, `?model=tiny`).
 */
const SHIPPED = { 'patchbay-ioi': 'patchbay-ioi: 3 layers, trained on IOI (offline, 8 MB)', tiny: 'tiny: the random test model (offline, 3 MB)' };
let EMBEDDED = SHIPPED[params.get('model')] ? params.get('model') : 'patchbay-ioi';
const embeddedBase = () => new URL(`../models/${EMBEDDED}/`, import.meta.url).href;
/** The model workers: on the CPU, several share each run (`?workers=N` sets how many). */
const requestedWorkers = Number(params.get('workers'));
const worker = new WorkerPool(new URL('./worker.js', import.meta.url), {
  requested: Number.isFinite(requestedWorkers) && requestedWorkers >= 1 ? requestedWorkers : null,
});
window.patchbayPool = worker;
worker.onSize = () => showModelStatus();

/**
 * State the end-to-end tests read. `started` counts runs begun and `lastStarted` is the exact
 * spec text the worker handed to the core; `stages` lists the stages of the latest run.
 */
const state = {
  backend: null,
  model: null,
  prediction: null,
  results: null,
  resultsSpec: null,
  /** The backend the results shown were computed on here (null for a link's results). */
  resultsBackend: null,
  /** A link's grid digest, `{ spec, digest }` (canonical spec text and digest JSON text). */
  linkDigest: null,
  reproduction: null,
  running: false,
  errors: [],
  runs: 0,
  /** How many workers share each run (1 on WebGPU). */
  workers: 1,
  /** `[done, total]` of every progress report of the latest run. */
  progress: [],
  started: 0,
  lastStarted: null,
  stages: [],
  links: 0,
  /** The load request of the model loaded, to load it again in a restarted worker. */
  loaded: null,
  /** How often the worker was replaced after an internal error. */
  restarts: 0,
  timings: {},
};
/** Milliseconds since the page started loading, for the page-load benchmark. */
const mark = (name) => {
  state.timings[name] ??= Math.round(performance.now());
};
window.patchbay = state;

/** The core's choices (components, metrics, defaults), and what uses them; set in main(). */
let catalog;
let editor;
let compareView;
/** The circuit panel (web/circuit.js). */
let circuitPanel;
const resultsView = new ResultsView(worker, {
  inspect: (what) => inspect(what),
  drawn: (geometry) => {
    state.heatmap = geometry;
    mark('heatmap');
  },
});
worker.onStarted = (spec) => {
  state.started += 1;
  state.lastStarted = spec;
};

function showError(node, error) {
  const message = error?.message ?? String(error);
  say(node, message);
  state.errors.push(message);
}

// ---------------------------------------------------------------- progress

let runStarted = 0;
worker.onProgress = (p) => {
  if (p.kind === 'run' && p.total === 0) {
    // A stage before the first patch: preparing, compiling GPU kernels, the baseline runs.
    state.stages.push({ stage: p.stage, at: Math.round(p.elapsed) });
    $('#run-status').textContent = `${p.stage[0].toUpperCase()}${p.stage.slice(1)}…`;
    return;
  }
  if (p.kind === 'run') {
    state.progress.push([p.done, p.total]);
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
      resultsView.showPartial(p.partial).catch(() => {});
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

/** What the worker's backend is started with: WebGPU unless `?backend=cpu`, and any binding cap. */
function backendArgs() {
  const cap = params.get('bindingCap');
  return { useGpu: params.get('backend') !== 'cpu', bindingCap: cap ? Number(cap) : null };
}

/** The backend line: what runs the model. */
function showBackend() {
  $('#backend').textContent = `Running on ${state.backend.description}`;
}

/** The model line, once a model has loaded: its shape, where it came from, and how many workers share each run. */
let modelLine = null;
function showModelStatus() {
  state.workers = worker.size;
  if (!modelLine) return;
  const pool = worker.size > 1 ? ` ${worker.size} workers share each run.` : '';
  $('#model-status').textContent = modelLine + pool;
}

async function startBackend() {
  const info = await worker.call('init', backendArgs());
  state.backend = info;
  mark('backend');
  showBackend();
  $('#backend').dataset.kind = info.kind;
  if (info.fallback_reason) {
    say(
      $('#backend-warning'),
      `WebGPU is not available: ${info.fallback_reason}. Patchbay runs on the CPU instead, which is much slower for models of GPT-2's size.`,
    );
  }
}

function source() {
  return document.querySelector('input[name="source"]:checked').value;
}

/** The GPT-2 family on the Hub (the catalog's), and what the worker found of each: size, cache, fit. */
const hubModel = (id) => catalog.hub_models.find((m) => m.id === id);
const hubChecks = new Map();
/** The browser's `navigator.deviceMemory` (GiB, a power of two), when it gives one. */
const deviceMemory = () => navigator.deviceMemory ?? null;

function hubChoice() {
  return document.querySelector('input[name="hub-model"]:checked').value;
}

/** The Model menu's list of the family, from the catalog; sizes and fit come from showHubSizes. */
function populateHubModels() {
  $('#hub-models').append(
    ...catalog.hub_models.map((m, i) => {
      const label = el('label', { classes: ['hub-model'] });
      const input = el('input', { attrs: { type: 'radio', name: 'hub-model', value: m.id } });
      input.checked = i === 0;
      input.addEventListener('change', showHubChoice);
      const shape = ` ${m.label} (${m.id}): ${m.n_layer} layers × ${m.n_head} heads, d_model ${m.n_embd}, ${(m.parameters / 1e6).toFixed(0)}M parameters`;
      label.append(input, shape, el('span', { classes: ['hub-fit'], attrs: { 'data-id': m.id } }));
      return label;
    }),
  );
}

/** Each family model's download size (the Hub's headers), the memory it needs, and whether it fits. */
async function showHubSizes() {
  $('#hub-size').textContent = 'Checking the sizes on the Hub…';
  for (const m of catalog.hub_models) {
    const check = await worker.call('hubCheck', { id: m.id, deviceMemory: deviceMemory() });
    hubChecks.set(m.id, check);
    const size = `${check.exact === false ? 'about ' : ''}${formatBytes(check.size)}${check.cached ? ' (in this browser\'s cache)' : ' download'}`;
    const gpu = check.fit.gpu_bytes ? ` and ${formatBytes(check.fit.gpu_bytes)} of GPU memory` : '';
    const verdict = { fits: 'fits this device', may_not_fit: 'may not fit this device', does_not_fit: 'does not fit this device' }[check.fit.verdict];
    const span = document.querySelector(`.hub-fit[data-id="${m.id}"]`);
    span.textContent = ` — ${size}; needs ${formatBytes(check.fit.tab_bytes)} of memory${gpu}; ${verdict}.`;
    span.dataset.verdict = check.fit.verdict;
  }
  showHubChoice();
}

/** The chosen family model's line: its size, and what it needs against what this device has. */
function showHubChoice() {
  const m = hubModel(hubChoice());
  const check = hubChecks.get(m.id);
  if (!check || source() !== 'hub') return;
  const size = formatBytes(check.size);
  const download = check.exact === false ? `download of about ${size}` : `${size} download`;
  $('#hub-size').textContent =
    (check.cached
      ? `${m.label} (${size}) is in this browser's cache: loading it needs no download. `
      : `${m.label} is a ${download} (kept in this browser's cache afterwards). `) + check.fit.message;
  $('#load').textContent = check.cached ? 'Load from cache' : `Download ${size} and load`;
}

function onSourceChange() {
  const kind = source();
  $('#hub-details').hidden = kind !== 'hub';
  $('#file-details').hidden = kind !== 'file';
  $('#url-details').hidden = kind !== 'url';
  $('#load').textContent = 'Load';
  say($('#model-error'), '');
  if (kind === 'hub') showHubSizes().catch((e) => showError($('#model-error'), e));
}

/** A folder request from what the user typed: a folder URL, or the URL of a .safetensors file. */
function folderOf(text) {
  let url;
  try {
    url = new URL(text);
  } catch {
    throw new Error(`"${text}" is not a URL; give one such as ${catalog.hub_models[0].base}`);
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
  // The worker checks that the model fits this device before it downloads anything.
  if (kind === 'hub') return [{ kind: 'hub', id: hubChoice(), deviceMemory: deviceMemory() }, { hub: hubChoice() }];
  if (kind === 'url') {
    const text = $('#model-url').value.trim();
    return [folderOf(text), { url: text }];
  }
  const files = [...$('#files').files];
  if (files.length === 0) throw new Error('Choose the model files first.');
  const weights = files.find((f) => f.name.endsWith('.safetensors'));
  return [{ kind: 'files', files }, { local: weights?.name ?? files[0].name }];
}

/**
 * How the page loads a spec's model: `{ radio, embedded?, url? }`, or null for a model it
 * cannot load (a Hub model outside the GPT-2 family, an unknown shipped one).
 */
function loadable(model) {
  if (model?.embedded !== undefined) return SHIPPED[model.embedded] ? { radio: 'fixture', embedded: model.embedded } : null;
  if (model?.hub !== undefined) return hubModel(model.hub) ? { radio: 'hub', hub: model.hub } : null;
  if (model?.url !== undefined) return { radio: 'url', url: model.url };
  if (model?.local !== undefined) return { radio: 'file' };
  return null;
}

/** Cancels the running experiment, if any, and waits until it has stopped. */
async function stopRun() {
  if (!state.running) return;
  await worker.call('cancel');
  while (state.running) await new Promise((resolve) => setTimeout(resolve, 50));
}

/**
 * Loads the chosen model. With `adopt` (the user pressed Load), the experiment runs on it from
 * now on. A failed load leaves the previous model loaded and usable.
 */
async function loadModel({ adopt = false } = {}) {
  say($('#model-error'), '');
  await stopRun();
  $('#progress-text').textContent = '';
  const [request, model] = chosenModel();
  $('#load').disabled = true;
  setRunnable(false);
  $('#model-status').textContent = 'Loading…';
  modelLine = null;
  try {
    const { info, origin } = await worker.call('load', { source: request });
    state.model = { ...info, source: model };
    state.loaded = request;
    mark('model');
    predicted = null;
    predictions.clear();
    if (adopt) editor.setModel(model);
    editor.modelReady = true;
    modelLine =
      `Loaded ${info.n_layer} layers × ${info.n_head} heads, d_model ${info.n_embd}, ` +
      `context ${info.n_positions} (${origin}).`;
    showModelStatus();
    // Nothing was downloaded: no download line to keep.
    if (origin.startsWith('shipped')) $('#progress-text').textContent = '';
    showModelNote();
    editor.schedule(0);
  } catch (error) {
    // The line stays when the helpers have loaded the previous model again (web/worker-pool.js).
    modelLine = state.model ? `The previous model, ${modelName(state.model.source)}, is still loaded.` : null;
    $('#model-status').textContent = modelLine ?? '';
    throw error;
  } finally {
    $('#load').disabled = false;
    $('#progress').hidden = true;
    setRunnable(Boolean(state.model));
  }
}

/**
 * After an internal error the worker is replaced on the next action: the fresh one gets the
 * same backend, the model that was loaded and the results on show, before that action runs.
 */
worker.onRestart = async (send) => {
  $('#model-status').textContent = 'Restarting after the internal error: loading the model again…';
  await send('init', backendArgs());
  if (state.loaded) await send('load', { source: state.loaded });
  if (resultsView.results) await send('show', { slot: 'main', results: resultsView.results, classes: resultsView.classes });
  state.restarts += 1;
  $('#model-status').textContent = state.model ? `Reloaded ${modelName(state.model.source)} after the internal error.` : '';
};

/** Says so when the experiment names a model other than the loaded one. */
function showModelNote() {
  const named = editor.spec?.model;
  const box = $('#kept-model');
  if (!named || sameModel(named, state.model?.source)) {
    say(box, '');
    return;
  }
  const how = loadable(named)
    ? 'Load it above to run the experiment, or load another model to run it there.'
    : `This page cannot load it: it loads ${catalog.hub_models.map((m) => m.label).join(', ')} from the Hub, the models that ship with the app, a URL or local files. Load one of those above to run the experiment on it instead.`;
  say(box, `The experiment names the model ${modelName(named)}${state.model ? `, but ${modelName(state.model.source)} is loaded` : ''}. ${how}`);
}

function setRunnable(on) {
  for (const id of ['#run-experiment', '#compare-run', '#run', '#sensitivity-run', '#lens-run', '#circuit-run']) $(id).disabled = !on || Boolean(state.running);
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
        b.addEventListener('click', () => editor.setField(target, p.raw));
        use.append(b);
      }
      row.append(cell, use);
      return row;
    }),
  );
}

let predicted = null;
/** The loaded model's latest predictions by `bos|text`: a prompt that comes back costs no pass. */
const predictions = new Map();
async function predict(force = false) {
  const text = $('#clean').value;
  const bos = $('#bos').checked;
  const key = `${bos}|${text}`;
  if (!force && key === predicted) return;
  predicted = key;
  // A generated dataset with no pair listed leaves the prompt empty: nothing to predict.
  if (!force && text === '') return;
  say($('#predict-error'), '');
  try {
    const result = (!force && predictions.get(key)) || (await worker.call('predict', { text, bos, k: 10 }));
    predictions.set(key, result);
    if (predictions.size > 64) predictions.delete(predictions.keys().next().value);
    state.prediction = result;
    renderTop(result.top);
    editor.renderSuggestions(result.top);
  } catch (error) {
    showError($('#predict-error'), error);
  }
}

function onSpecChecked(check) {
  // The editor's latest check by the core: the spec text checked, and its error if any.
  state.checked = { spec: check?.spec ?? null, ok: Boolean(check?.ok), error: check?.error?.message ?? null };
  showModelNote();
  circuitPanel?.showSettings();
  if (check) predict();
}

// ---------------------------------------------------------------- running

/** Runs spec text in the worker with progress and Cancel; resolves to its results. */
function runSpec(spec, label = 'experiment', show = null) {
  return runInWorker('run', { spec }, label, show);
}

/** Runs a long worker command with the progress bar and Cancel; `show` its result, if given, before it counts as done. */
async function runInWorker(cmd, args, label, show = null) {
  if (state.running) throw new Error('An experiment is already running.');
  state.running = label === 'experiment' ? 'experiment' : label;
  state.stages = [];
  state.progress = [];
  setRunnable(false);
  $('#cancel').hidden = false;
  $('#run-progress').hidden = false;
  $('#run-progress').value = 0;
  $('#run-status').textContent = `Starting ${label}…`;
  runStarted = performance.now();
  try {
    const results = await worker.call(cmd, args);
    const seconds = (performance.now() - runStarted) / 1000;
    await show?.(results);
    state.runs += 1;
    $('#run-status').textContent = `Finished ${label} in ${seconds.toFixed(1)} s.`;
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

/** The CPU warning's sentence, from the core's estimate of the run's size. */
function sizeText(size) {
  const seconds = size.cpu_seconds < 120 ? `${Math.round(size.cpu_seconds)} s` : `${(size.cpu_seconds / 60).toFixed(1)} min`;
  const samples = size.rows > size.prompts ? ` × ${size.rows / size.prompts} noise samples` : '';
  return (
    `This runs ${size.patches.toLocaleString('en')} patches on each of ${size.prompts.toLocaleString('en')} ` +
    `prompt${size.prompts > 1 ? 's' : ''}${samples} (${size.tokens} tokens each) on the CPU: about ${seconds} on one worker, by the ` +
    `core's estimate (it warns above ${size.warning_seconds} s)${state.workers > 1 ? `; the ${state.workers} workers here share it` : ''}. ` +
    'WebGPU would be much faster.'
  );
}

/** Throws (at the Run control) unless the model the editor's experiment names is loaded. */
function requireModel() {
  if (!state.model) throw Object.assign(new Error('Load a model first (above).'), { field: 'run' });
  if (!sameModel(editor.spec.model, state.model.source)) {
    showModelNote();
    throw Object.assign(new Error(`This experiment names ${modelName(editor.spec.model)}, which is not loaded: ${$('#kept-model').textContent}`), { field: 'run' });
  }
}

/** Runs the editor's experiment; unless `confirmed`, a long run on the CPU asks first. */
async function runExperiment(confirmed = false) {
  clearErrors();
  say($('#run-error'), '');
  $('#cpu-confirm').hidden = true;
  try {
    const spec = await editor.canonical();
    requireModel();
    if (!confirmed && state.backend.kind === 'cpu') {
      const size = await worker.call('size', { spec });
      state.size = size;
      if (size.slow_on_cpu) {
        $('#cpu-confirm-text').textContent = sizeText(size);
        $('#cpu-confirm').hidden = false;
        $('#run-anyway').focus();
        return;
      }
    }
    // Shown before the run counts as done: whoever waits for it finds the page showing it.
    await runSpec(spec, 'experiment', async (results) => {
      mark('results');
      state.results = results;
      state.resultsSpec = spec;
      state.resultsBackend = state.backend.description;
      $('#share').disabled = false;
      await resultsView.show(results, { classes: true });
      await showReproduction(spec);
    });
  } catch (error) {
    if (error.message !== 'the run was cancelled') {
      showFieldError(error);
      state.errors.push(error.message);
    }
  }
}

/**
 * After a run of a link's experiment that carries a grid digest: whether the run reproduced the
 * link's grid, in the core's words, naming both backends.
 */
async function showReproduction(spec) {
  const box = $('#reproduction');
  box.classList.remove('differs');
  state.reproduction = null;
  const linked = state.linkDigest;
  if (!linked || linked.spec !== spec) {
    say(box, '');
    return;
  }
  try {
    state.reproduction = await worker.call('reproduce', { slot: 'main', digest: linked.digest, backend: state.backend.description });
    say(box, state.reproduction.summary);
    box.classList.toggle('differs', state.reproduction.differing > 0);
  } catch (error) {
    say(box, `This run cannot be checked against the link's grid: ${error.message}`);
    state.errors.push(error.message);
  }
}

// ---------------------------------------------------------------- looking inside a cell

async function inspect({ spec, cell, at, patch }) {
  const detail = $('#detail');
  const body = $('#detail-body');
  detail.hidden = false;
  body.replaceChildren();
  say($('#detail-status'), '');
  try {
    const { HeatmapView } = await import('./heatmap-view.js');
    if (at?.head) {
      const [layer, head] = at.head;
      $('#detail-title').textContent = `Attention pattern of head ${layer}.${head}`;
      say($('#detail-status'), `Running the clean, corrupted and patched runs of: ${patch}…`);
      const p = await worker.call('headPatterns', { spec, cell, layer, head });
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
        await new HeatmapView(canvas, worker).show({ grid, axes, title: `${name}: head ${layer}.${head}`, label: 'attention', limit: 1 });
      }
      state.detail = p;
    } else if (at?.position !== undefined) {
      $('#detail-title').textContent = `Heads at position "${at.label}"`;
      const breakdown = parseSpecText(spec);
      breakdown.target = { component: 'z', positions: [at.position], heads: 'each' };
      breakdown.window = null;
      breakdown.attribution = false;
      const heads = await runSpec(specText(breakdown), `heads at position ${at.position}`);
      say($('#detail-status'), `Each head's output patched alone at position "${at.label}", every layer.`);
      const canvas = el('canvas', { attrs: { 'aria-label': 'per-head breakdown' } });
      body.append(canvas);
      await worker.call('show', { slot: 'detail', results: heads });
      await new HeatmapView(canvas, worker).paint(await worker.call('draw', { slot: 'detail', key: 'grid' }));
      state.detail = heads;
    } else {
      $('#detail-title').textContent = patch;
      say($('#detail-status'), 'This cell covers every position and head; pick a per-position or per-head cell to look inside.');
    }
  } catch (error) {
    showError($('#detail-status'), error);
  }
}

// ---------------------------------------------------------------- logit lens and DLA

/** Runs the logit lens and DLA of the editor's experiment; its views come from the core. */
async function runLens() {
  say($('#lens-error'), '');
  requireModel();
  const spec = await editor.canonical();
  state.lensShown = null;
  state.lens = await runInWorker('lens', { spec }, 'logit lens');
  $('#lens').hidden = false;
  $('#lens-view').replaceChildren(...state.lens.views.map((v) => el('option', { text: v.label, attrs: { value: v.key } })));
  await drawLens();
}

let lensMap = null;

async function drawLens() {
  const view = state.lens.views.find((v) => v.key === $('#lens-view').value);
  const { HeatmapView } = await import('./heatmap-view.js');
  lensMap ??= new HeatmapView($('#lens-map'), worker);
  await lensMap.show({ grid: view.grid, axes: view.axes, title: view.title, label: view.value_label, limit: view.limit });
  state.lensShown = view.key;
}

// ---------------------------------------------------------------- circuits

/** Finds the circuit of the editor's experiment (web/circuit.js shows it). */
async function runCircuit() {
  say($('#circuit-error'), '');
  requireModel();
  await circuitPanel.find();
}

// ---------------------------------------------------------------- method sensitivity

async function runSensitivity() {
  say($('#sensitivity-error'), '');
  const checked = (name) => [...document.querySelectorAll(`input[name="${name}"]:checked`)].map((i) => i.value);
  const spec = await editor.canonical();
  const ioi = editor.spec.dataset?.task === 'ioi';
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
    samples: Number($('#sens-samples').value) || catalog.gn.samples,
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
  showStability(result);
  const axes = [
    { name: 'setting', labels },
    { name: 'setting', labels },
  ];
  const { HeatmapView } = await import('./heatmap-view.js');
  await new HeatmapView($('#jaccard'), worker).show({ grid: result.jaccard, axes, title: 'Jaccard of detected sets', label: 'Jaccard', limit: 1 });
  const rho = result.spearman.map((row) => row.map((v) => (v === null ? NaN : v)));
  await new HeatmapView($('#spearman'), worker).show({ grid: rho, axes, title: 'Spearman of grids', label: 'rho', limit: 1 });
}

/** How stable each setting's detected set is across seeds (the core's words), with two seeds or more. */
function showStability(result) {
  const rows = result.stability_view ?? [];
  $('#stability-box').hidden = rows.length === 0;
  $('#stability-note').textContent = rows.length ? '' : 'Give two seeds or more to see how stable each detected set is across them.';
  const table = $('#stability');
  table.replaceChildren();
  if (!rows.length) return;
  const head = el('tr');
  for (const h of ['setting', 'agreement across seeds', 'components detected (seeds detecting each)']) head.append(el('th', { text: h, attrs: { scope: 'col' } }));
  table.append(head);
  for (const row of rows) {
    const tr = el('tr');
    tr.append(el('th', { text: row.setting, attrs: { scope: 'row' } }), el('td', { text: row.agreement }));
    tr.append(el('td', { text: row.components.length ? row.components.join(', ') : 'none under any seed' }));
    table.append(tr);
  }
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
  const spec = resultsView.summary.spec;
  say($('#export-status'), '');
  switch (kind) {
    case 'png':
      return download('patchbay-heatmap.png', await resultsView.exportPng());
    case 'svg':
      return download('patchbay-heatmap.svg', new Blob([resultsView.exportSvg()], { type: 'image/svg+xml' }));
    case 'csv':
      return download(`patchbay-${view}.csv`, new Blob([await worker.call('csv', { slot: 'main', key: view })], { type: 'text/csv' }));
    case 'json':
      return download('patchbay-results.json', new Blob([JSON.stringify(results, null, 2)], { type: 'application/json' }));
    case 'spec':
      return download('patchbay-spec.json', new Blob([spec], { type: 'application/json' }));
    case 'python':
    case 'python-tl4':
    case 'python-nnsight': {
      // The script of the prepared spec: a generated dataset's prompts written out.
      const to = { python: 'tl3', 'python-tl4': 'tl4', 'python-nnsight': 'nnsight' }[kind];
      const { script, named, note } = await worker.call('script', { spec, to });
      state.script = { named, note };
      if (!named) say($('#export-status'), `The script cannot load this model by name. ${note}`);
      return download(`patchbay_experiment_${to}.py`, new Blob([script], { type: 'text/x-python' }));
    }
  }
}

/** A link to the editor's experiment (its canonical text); the results ride along if asked and theirs. */
async function share() {
  const spec = await editor.canonical();
  let results = null;
  let note = '';
  const ours = state.results && state.resultsSpec === spec;
  if ($('#share-results').checked) {
    if (ours) results = state.results;
    else note = 'The results shown are not of the experiment in the editor, so the link carries the experiment only.';
  }
  // A run's grid as a digest, so that whoever reruns the link sees whether it reproduced.
  const digest = ours && state.resultsBackend ? await worker.call('digest', { slot: 'main', backend: state.resultsBackend }) : null;
  const { url, dropped } = await makeLink(spec, results, catalog.link, digest);
  note = dropped ?? note;
  if (digest) note = `${note} It carries a digest of the grid computed on ${state.resultsBackend}: rerunning it says whether every cell reproduced.`.trim();
  $('#share-panel').hidden = false;
  $('#share-url').value = url;
  $('#share-length').textContent = `The link is ${url.length.toLocaleString('en')} characters long.${note ? ` ${note}` : ''}`;
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

/** Shows lesson `index` and runs its experiment (and its comparison, or its logit lens and DLA). */
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
  editor.fromSpec({ version: 1, model: state.model?.source ?? editor.spec?.model, prepend_bos: true, seed: 0, ...step.spec });
  await stopRun();
  await runExperiment(true);
  state.comparison = null;
  $('#compare').hidden = true;
  if (step.compare) {
    if (step.compare.kind) $('#compare-kind').value = step.compare.kind;
    state.comparison = await compareView.compare(editor.spec, step.compare.kind ?? step.compare);
    $('#compare-panel').scrollIntoView({ block: 'nearest' });
  }
  state.lens = null;
  $('#lens').hidden = true;
  if (step.lens) {
    await runLens();
    $('#lens-view').value = step.lens;
    await drawLens();
    $('#lens-panel').scrollIntoView({ block: 'nearest' });
  }
  state.circuit = null;
  $('#circuit').hidden = true;
  if (step.circuit) {
    await runCircuit();
    $('#circuit-panel').scrollIntoView({ block: 'nearest' });
  }
  state.lesson = { index, results: state.results, comparison: state.comparison, lens: state.lens, circuit: state.circuit };
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
    loadModel({ adopt: true })
      .then(() => {
        // A share link whose model had to be loaded first runs once it is; on another model
        // it says so and waits for Run.
        const named = state.pendingLinkRun;
        if (!named) return;
        state.pendingLinkRun = null;
        if (sameModel(named, state.model.source)) return runExperiment(true);
        say(
          $('#link-status'),
          `This link was made on ${modelName(named)}; the page has ${modelName(state.model.source)} loaded, so nothing has run. Press Run to run the link's experiment on ${modelName(state.model.source)}: its numbers will be that model's, not the link's.`,
        );
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
      await compareView.compare(editor.spec, $('#compare-kind').value);
      state.comparison = compareView.last;
    } catch (error) {
      if (error.message !== 'the run was cancelled') showError($('#compare-error'), error);
    }
  });
  $('#lens-run').addEventListener('click', () =>
    runLens().catch((error) => {
      if (error.message !== 'the run was cancelled') showError($('#lens-error'), error);
    }),
  );
  $('#lens-view').addEventListener('change', () => drawLens().catch((e) => showError($('#lens-error'), e)));
  $('#circuit-run').addEventListener('click', () =>
    runCircuit().catch((error) => {
      if (error.message !== 'the run was cancelled') showError($('#circuit-error'), error);
    }),
  );
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
  // A link pasted into this tab opens in place, with the model already loaded.
  window.addEventListener('hashchange', () => {
    if (isLink()) openLink().catch((e) => showError($('#link-error'), e));
  });
  window.addEventListener('unhandledrejection', (event) => showError($('#run-error'), event.reason));
}

/** Reads the URL's share link, if any: `{ spec (canonical text), results }`, or null. */
async function readCurrentLink() {
  let link;
  try {
    link = await readLink(catalog.link);
  } catch (error) {
    showError($('#link-error'), error);
    return null;
  }
  if (!link) return null;
  if (link.resultsError) showError($('#link-error'), new Error(`${link.resultsError.message} The experiment opens without them.`));
  let digest = null;
  if (link.digestError) showError($('#link-error'), new Error(`This link's grid digest cannot be read (${link.digestError.message}); the experiment opens and runs without the check.`));
  else if (link.digest) {
    try {
      digest = { digest: link.digest, note: await worker.call('checkDigest', { digest: link.digest }) };
    } catch (error) {
      showError($('#link-error'), new Error(`This link's grid digest cannot be read (${error.message}); the experiment opens and runs without the check.`));
    }
  }
  try {
    return { spec: await worker.call('parseSpec', { spec: link.spec }), results: link.results, digest };
  } catch (error) {
    showError($('#link-error'), new Error(`This link's experiment cannot be opened: ${error.message}`));
    return null;
  }
}

/**
 * Opens the URL's share link: the editor holds its spec exactly; its results, if any, are
 * shown; its model is loaded (the shipped ones at once, others when the user presses Load) and
 * the experiment runs on it, never on another model. `startup`: no model is loaded yet.
 */
async function openLink({ startup = false } = {}) {
  say($('#link-error'), '');
  say($('#link-status'), '');
  const link = await readCurrentLink();
  if (!link) return false;
  await stopRun();
  state.links += 1;
  state.linkDigest = link.digest && { spec: link.spec, digest: link.digest.digest };
  state.reproduction = null;
  say($('#reproduction'), link.digest?.note ?? '');
  $('#reproduction').classList.remove('differs');
  let withResults = false;
  if (link.results) {
    try {
      await resultsView.show(link.results, { source: 'These results came with the link; run the experiment to reproduce them.' });
      state.results = link.results;
      state.resultsBackend = null;
      state.resultsSpec = resultsView.summary.spec;
      $('#share').disabled = false;
      withResults = true;
    } catch (error) {
      showError($('#link-error'), new Error(`The results in this link cannot be shown (${error.message}); the experiment opens without them.`));
    }
  }
  const spec = parseSpecText(link.spec);
  editor.fromSpec(spec, ' (from the link)');
  const model = spec.model;
  const how = loadable(model);
  state.pendingLinkRun = null;
  if (sameModel(model, state.model?.source)) {
    showModelNote();
    if (!withResults) await runExperiment(true);
    return true;
  }
  // Said before anything runs: a link's numbers are its model's, not the loaded one's.
  const other = state.model ? `This link was made on ${modelName(model)}; the page has ${modelName(state.model.source)} loaded. ` : '';
  if (!how) {
    say($('#link-status'), `${other}This link's experiment runs on ${modelName(model)}, which this page cannot load, so nothing has run. Load a model above to run it there instead.`);
    showModelNote();
    return true;
  }
  document.querySelector(`input[name="source"][value="${how.radio}"]`).checked = true;
  if (how.hub) document.querySelector(`input[name="hub-model"][value="${how.hub}"]`).checked = true;
  onSourceChange();
  if (how.embedded) {
    setEmbedded(how.embedded);
    await loadModel();
    if (!(startup && withResults)) await runExperiment(true);
    return true;
  }
  if (how.url) $('#model-url').value = how.url;
  const line = {
    hub: `This link uses ${hubModel(model.hub ?? '')?.label}: load it (above) to run the experiment.`,
    url: 'This link loads its model from a URL: press Load to fetch it.',
    file: `This link used a local file (${model.local}): choose it above to run the experiment.`,
  }[how.radio];
  say($('#link-status'), `${other}${line}`);
  showModelNote();
  // Run once its model is loaded: the link's model, not another one loaded instead.
  state.pendingLinkRun = withResults ? null : model;
  return true;
}

function setEmbedded(name) {
  EMBEDDED = name;
  $('#embedded-label').textContent = `Shipped with the app: ${SHIPPED[EMBEDDED]}`;
}

/** Test hooks: the canonical form of spec text, the editor's spec, the link of canonical text, the catalog. */
window.patchbayApi = {
  canonical: (text) => worker.call('parseSpec', { spec: text }),
  editor: () => editor.canonical(),
  link: async (spec, results = null, digest = null) => (await makeLink(spec, results, catalog.link, digest)).url,
  catalog: () => catalog,
};

/**
 * After one visit the page, its lessons and the shipped models work offline (sw.js). Where
 * service workers are unavailable or blocked, the page works online as before.
 */
function installOffline() {
  navigator.serviceWorker
    ?.register('./sw.js')
    .then(() => navigator.serviceWorker.ready)
    .then(() => {
      state.offline = true;
    })
    .catch(() => {});
}

async function main() {
  installOffline();
  catalog = await worker.call('catalog');
  editor = new Editor(worker, catalog, { onChange: (check) => onSpecChecked(check), model: { embedded: EMBEDDED } });
  compareView = new CompareView(worker, (spec, label) => runSpec(spec, label), catalog);
  circuitPanel = new CircuitPanel(worker, catalog, editor, { run: runInWorker, download, state });
  circuitPanel.showSettings();
  populateSensitivity();
  populateHubModels();
  wire();
  setEmbedded(EMBEDDED);
  await startBackend();
  const lessonIndex = lessonFromHash();
  if (lessonIndex !== null) {
    setPresent(new URLSearchParams(location.hash.slice(1)).has('present'));
    await loadModel();
    await showLesson(lessonIndex);
    return;
  }
  if (await openLink({ startup: true })) return;
  editor.applyPreset('ioi');
  await loadModel();
  await runExperiment(true);
}

/** The sensitivity panel's metric and direction choices, from the catalog. */
function populateSensitivity() {
  const box = (name, items, checked) =>
    items.map((m) => {
      const label = el('label', { classes: ['inline'] });
      const input = el('input', { attrs: { type: 'checkbox', name, value: m.name } });
      input.checked = checked.includes(m.name);
      label.append(input, ` ${m.label}`);
      return label;
    });
  $('#sens-metrics').replaceChildren(...box('sens-metric', catalog.metric_labels, ['logit_diff', 'prob']));
  $('#sens-samples').value = String(catalog.gn.samples);
  $('#sens-directions').replaceChildren(...box('sens-direction', catalog.directions.map((d) => ({ name: d.name, label: d.name })), ['denoising']));
}

main().catch((error) => showError($('#model-error'), error));
