// bench.html: the GPU benchmark anyone can run. The worker builds a GPT-2-shaped model of the
// family with GPT-2's seeded initialisation (the core's `Session.seeded`, the model `patchbay
// init` writes), then this page times, on the browser's adapter: the first forward pass (on
// WebGPU, kernel compilation included), a forward pass (median of 5), the IOI resid_pre sweep
// (first, then warm) and the two head sweeps, as bench/gpu.sh does natively. On the CPU the
// sweeps are shared by a pool of workers (web/worker-pool.js; `?workers=N` sets how many). It
// prints a table and a Markdown copy, with the adapter's name and the pool's size. Nothing the
// user types reaches HTML.

import { WorkerPool } from './worker-pool.js';
import { $, el, say } from './dom.js';

const params = new URLSearchParams(location.search);
const requestedWorkers = Number(params.get('workers'));
const worker = new WorkerPool(new URL('./worker.js', import.meta.url), {
  requested: Number.isFinite(requestedWorkers) && requestedWorkers >= 1 ? requestedWorkers : null,
});
const PROMPT = { clean: 'When Mary and John went to the store, John gave a drink to', corrupted: 'When Mary and John went to the store, Mary gave a drink to', answer: ' Mary', counter_answer: ' John' };
/** The state tests read. */
const state = { backend: null, workers: 1, rows: null, results: {}, error: null };
window.patchbayBench = state;

/** The spec of one sweep on the IOI prompt, as bench/gpu.sh writes it. */
function spec(target) {
  return JSON.stringify({
    version: 1,
    model: { local: 'seeded' },
    prepend_bos: true,
    prompts: [PROMPT],
    corruption: { method: 'str' },
    metric: { kind: 'logit_diff', normalized: true },
    direction: 'denoising',
    target,
  });
}

async function timed(what) {
  const start = performance.now();
  const result = await what();
  return [(performance.now() - start) / 1000, result];
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

async function run(shape) {
  const rows = [];
  const row = (name, seconds) => rows.push({ name, seconds });
  const status = (text) => say($('#bench-status'), text);
  status(`Building a seeded ${shape} in the page…`);
  const [build] = await timed(() => worker.call('seeded', { shape, seed: 0 }));
  row(`build the model (seeded ${shape})`, build);
  // The helpers build their copies before the sweeps are timed.
  await worker.settled();
  state.workers = worker.size;
  const predict = () => worker.call('predict', { text: PROMPT.clean, bos: true, k: 10 });
  status('First forward pass…');
  row('first forward pass (kernel compilation included on WebGPU)', (await timed(predict))[0]);
  const forwards = [];
  for (let i = 0; i < 5; i++) forwards.push((await timed(predict))[0]);
  row('one forward pass (median of 5)', median(forwards));
  const sweeps = [
    ['resid_pre', 'first resid_pre sweep (layer × position)', { component: 'resid_pre', positions: 'each' }],
    ['resid_pre', 'resid_pre sweep, warm', { component: 'resid_pre', positions: 'each' }],
    ['z_all_pos', 'head sweep, all positions (layer × head)', { component: 'z', positions: 'all' }],
    ['z_by_pos', 'head sweep by position (layer × position × head)', { component: 'z', positions: 'each' }],
  ];
  for (const [key, name, target] of sweeps) {
    status(`${name}…`);
    const [seconds, results] = await timed(() => worker.call('run', { spec: spec(target) }));
    state.results[key] = results;
    row(name, seconds);
  }
  status('Done.');
  return rows;
}

function show(rows) {
  $('#bench-table tbody').replaceChildren(
    ...rows.map((r) => {
      const tr = el('tr');
      tr.append(el('td', { text: r.name }), el('td', { text: r.seconds.toFixed(3) }));
      return tr;
    }),
  );
  $('#bench-table').hidden = false;
  const lines = [`adapter: ${state.backend.description}; ${state.workers} worker(s) per sweep; ${navigator.userAgent}`, '', '| measurement | seconds |', '|---|---|'];
  for (const r of rows) lines.push(`| ${r.name} | ${r.seconds.toFixed(3)} |`);
  $('#bench-markdown').textContent = lines.join('\n');
  $('#bench-markdown').hidden = false;
}

async function main() {
  const useGpu = params.get('backend') !== 'cpu';
  state.backend = await worker.call('init', { useGpu, bindingCap: null });
  $('#bench-backend').textContent = `Running on ${state.backend.description}${state.backend.fallback_reason ? ` (WebGPU is not available: ${state.backend.fallback_reason})` : ''}`;
  const { hub_models: family } = await worker.call('catalog');
  $('#bench-shape').replaceChildren(...family.map((m) => el('option', { text: `${m.name} (${m.n_layer} layers, width ${m.n_embd})`, attrs: { value: m.name } })));
  if (params.get('shape')) $('#bench-shape').value = params.get('shape');
  const go = async () => {
    $('#bench-run').disabled = true;
    say($('#bench-error'), '');
    try {
      state.rows = null;
      const rows = await run($('#bench-shape').value);
      show(rows);
      state.rows = rows;
    } catch (error) {
      state.error = error.message;
      say($('#bench-error'), error.message);
    } finally {
      $('#bench-run').disabled = false;
    }
  };
  $('#bench-run').addEventListener('click', go);
  $('#bench-run').disabled = false;
  if (params.get('run') === '1') await go();
}

main().catch((error) => {
  state.error = error.message;
  say($('#bench-error'), error.message);
});
