// The results view: baselines, the heatmap of any grid of the results (effect, raw metric,
// window contrast, attribution, spread), a position selector for three-axis grids, a sentence
// for the cell under the pointer, the 2σ detections, looking inside a cell, and exports.

import { $, el, say } from './dom.js';
import { HeatmapView } from './heatmap-view.js';

const HEAD_COMPONENTS = ['z', 'q', 'k', 'v', 'pattern'];
/** Outline colours for known head classes (Okabe-Ito, colour-blind safe). */
const CLASS_COLORS = ['#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#000000'];
const flat = (g) => (Array.isArray(g) ? g.flatMap(flat) : [g]);

const COMPONENT_TEXT = {
  resid_pre: 'the residual stream entering layer',
  resid_mid: 'the residual stream between attention and MLP of layer',
  resid_post: 'the residual stream leaving layer',
  attn_out: 'the attention output of layer',
  mlp_out: 'the MLP output of layer',
  z: 'the output of head',
  q: 'the queries of head',
  k: 'the keys of head',
  v: 'the values of head',
  pattern: 'the attention pattern of head',
  block_every: '',
  path: 'the path from head',
};

const METRIC_TEXT = {
  logit_diff: 'logit difference',
  prob: 'probability of r',
  kl: 'KL divergence from the clean run',
  prob_diff: 'probability difference P(R) − P(R′)',
};

function pct(v) {
  return `${(100 * Math.abs(v)).toFixed(0)}%`;
}

/** Names the patch of one cell from its axis labels. */
export function describePatch(results, labels, axes) {
  const at = Object.fromEntries(axes.map((a, i) => [a.name, labels[i]]));
  let component = results.spec.target.component;
  if (at.component) component = at.component;
  const where = [];
  const head = at.head_index !== undefined;
  if (head || component === 'path') where.push(`${COMPONENT_TEXT[component]} ${at.layer}.${at.head_index}`);
  else where.push(`${COMPONENT_TEXT[component]} ${at.layer}`);
  const position = at.pos ?? at.dest_pos;
  if (position !== undefined) where.push(`at position "${position}"`);
  else if (results.spec.target.positions === 'all') where.push('at every position');
  if (results.spec.window) where.push(`(with its ${results.spec.window.size}-layer window)`);
  return where.join(' ');
}

/** One short sentence saying what a value means. */
export function meaning(results, view, value, patch) {
  if (value === null || value === undefined || Number.isNaN(value)) return `${patch}: no value.`;
  const metric = METRIC_TEXT[results.metric];
  const v = Number(value);
  if (view === 'raw_grid') return `With ${patch} patched, the ${metric} is ${v.toPrecision(4)}.`;
  if (view === 'sd_grid') return `Across prompts, patching ${patch} varies with standard deviation ${v.toPrecision(3)}.`;
  const prefix = view === 'attribution' ? 'Attribution patching estimates that patching' : 'Patching';
  const denoise = results.direction === 'denoising';
  const from = denoise ? 'the clean run into the corrupted run' : 'the corrupted run into the clean run';
  if (!results.normalized) return `${prefix} ${patch} from ${from} changes the ${metric} by ${v >= 0 ? '+' : ''}${v.toPrecision(3)}.`;
  if (denoise) {
    return v >= 0
      ? `${prefix} ${patch} from ${from} restores ${pct(v)} of the clean run's ${metric}.`
      : `${prefix} ${patch} from ${from} moves the ${metric} ${pct(v)} further from the clean run: a harmful component.`;
  }
  return v <= 0
    ? `${prefix} ${patch} from ${from} removes ${pct(v)} of its ${metric}.`
    : `${prefix} ${patch} from ${from} pushes the ${metric} ${pct(v)} beyond the clean run.`;
}

export class ResultsView {
  constructor(worker, { inspect, drawn } = {}) {
    this.worker = worker;
    this.inspect = inspect;
    this.drawn = drawn;
    this.results = null;
    this.heatmap = new HeatmapView($('#heatmap'), worker, {
      hover: (cell) => this.hover(cell),
      select: (cell) => this.select(cell),
    });
    $('#view').addEventListener('change', () => this.draw());
    $('#slice').addEventListener('change', () => this.draw());
  }

  /** The grids these results have, for the view selector. */
  views() {
    const r = this.results;
    const views = [['grid', r.normalized ? 'Effect (normalized)' : 'Effect', r.grid]];
    views.push(['raw_grid', `Raw ${METRIC_TEXT[r.metric]}`, r.raw_grid]);
    if (r.window) {
      views.push(['window_single_layer', 'Single layers (no window)', r.window.single_layer]);
      views.push(['window_summed_single_layer', 'Summed single layers over each window', r.window.summed_single_layer]);
    }
    if (r.attribution) views.push(['attribution', 'Attribution patching', r.attribution.grid]);
    if (r.sd_grid) views.push(['sd_grid', 'Spread over prompts (sd)', r.sd_grid]);
    return views;
  }

  async show(results, source = '') {
    this.results = results;
    $('#results-empty').hidden = true;
    $('#results').hidden = false;
    $('#detail').hidden = true;
    $('#results-title').textContent = await this.worker.call('title', { results });
    say($('#results-source'), source);
    this.showBaselines();
    const select = $('#view');
    select.replaceChildren(...this.views().map(([key, label]) => el('option', { text: label, attrs: { value: key } })));
    const sliced = results.axes.length === 3;
    $('#slice').hidden = !sliced;
    $('#slice-label').hidden = !sliced;
    if (sliced) {
      const axis = results.axes[0].name === 'component' ? results.axes[0] : results.axes[1];
      $('#slice-label').textContent = axis.name === 'component' ? 'Component' : 'Position';
      $('#slice').replaceChildren(...axis.labels.map((l, i) => el('option', { text: `${i}: ${l}`, attrs: { value: String(i) } })));
      $('#slice').value = String(axis.labels.length - 1);
    }
    this.showDetected();
    await this.draw();
  }

  showBaselines() {
    const r = this.results;
    const table = $('#baselines');
    const row = (cells, header = false) => {
      const tr = el('tr');
      cells.forEach((c, i) => tr.append(el(header || i === 0 ? 'th' : 'td', { text: c, attrs: header || i === 0 ? { scope: header ? 'col' : 'row' } : {} })));
      return tr;
    };
    const mean = (f) => r.prompts.reduce((s, p) => s + f(p), 0) / r.prompts.length;
    const fmt = (v) => (Math.abs(v) >= 0.01 || v === 0 ? v.toFixed(3) : v.toExponential(2));
    const many = r.prompts.length > 1 ? ` (mean of ${r.prompts.length} prompts)` : '';
    table.replaceChildren(
      row(['', `${METRIC_TEXT[r.metric]}${many}`, 'P(r)', "P(r′)", 'logit diff'], true),
      row(['Clean run', fmt(r.clean_metric), fmt(mean((p) => p.clean.prob_answer)), fmt(mean((p) => p.clean.prob_counter)), fmt(mean((p) => p.clean.logit_diff))]),
      row(['Corrupted run', fmt(r.corrupted_metric), fmt(mean((p) => p.corrupted.prob_answer)), fmt(mean((p) => p.corrupted.prob_counter)), fmt(mean((p) => p.corrupted.logit_diff))]),
    );
  }

  showDetected() {
    const r = this.results;
    const box = $('#detected');
    box.replaceChildren();
    if (!r.detected.length) return;
    const rule = r.spec.detect?.threshold !== undefined ? `with an effect of at least ${r.spec.detect.threshold}` : `over ${r.spec.detect?.sigma ?? 2}σ from the mean`;
    box.append(el('h3', { text: `Components ${rule} (${r.detected.length})` }));
    const list = el('ul', { classes: ['detected'] });
    for (const d of r.detected.slice(0, 12)) {
      const labels = d.index.map((i, a) => r.axes[a].labels[i]);
      const text = `${describePatch(r, labels, r.axes)}: ${d.value.toFixed(3)} (${d.z > 0 ? '+' : ''}${d.z.toFixed(1)}σ)`;
      list.append(el('li', { text, classes: [d.z > 0 ? 'positive' : 'negative'] }));
    }
    box.append(list);
  }

  /** The grid of the current view, sliced to two axes for three-axis grids. */
  current() {
    const r = this.results;
    const key = $('#view').value;
    const grid = this.views().find(([k]) => k === key)[2];
    if (r.axes.length < 3) return { key, grid, axes: r.axes, toFull: (cell) => cell };
    const s = Number($('#slice').value);
    const [a0, a1, a2] = r.axes;
    if (a0.name === 'component') {
      return { key, grid: grid[s], axes: [a1, a2], toFull: (cell) => s * a1.labels.length * a2.labels.length + cell };
    }
    const P = a1.labels.length;
    const H = a2.labels.length;
    return {
      key,
      grid: grid.map((layer) => layer[s]),
      axes: [a0, a2],
      toFull: (cell) => Math.floor(cell / H) * P * H + s * H + (cell % H),
    };
  }

  /** One colour scale for all effect views, so they compare by eye. */
  limit(key, grid) {
    const flat = (g) => (Array.isArray(g) ? g.flatMap(flat) : [g]);
    const max = (g) => Math.max(1e-12, ...flat(g).filter(Number.isFinite).map(Math.abs));
    if (key === 'raw_grid' || key === 'sd_grid') return max(grid);
    return Math.max(...this.views().filter(([k]) => k !== 'raw_grid' && k !== 'sd_grid').map(([, , g]) => max(g)));
  }

  async draw() {
    const view = this.current();
    const label = view.key === 'raw_grid' ? this.results.metric : view.key === 'sd_grid' ? 'sd' : 'effect';
    const title = $('#view').selectedOptions[0]?.textContent ?? '';
    this.view = view;
    await this.heatmap.show({ grid: view.grid, axes: view.axes, title, label, limit: this.limit(view.key, view.grid) });
    const { width, height, cells } = this.heatmap.drawn;
    this.overlay(this.classes);
    this.drawn?.({ width, height, cells });
  }

  hover(cell) {
    if (!cell || !this.results) return;
    const r = this.results;
    const patch = describePatch(r, this.fullLabels(cell), r.axes);
    let spread = '';
    if (r.sd_grid && this.view.key === 'grid') {
      const full = this.view.toFull(cell.cell);
      const values = r.prompt_grids.map((g) => flat(g)[full]);
      const sd = flat(r.sd_grid)[full];
      spread = ` Across the ${values.length} prompts: sd ${sd.toPrecision(3)}, from ${Math.min(...values).toPrecision(3)} to ${Math.max(...values).toPrecision(3)}.`;
    }
    $('#hover-text').textContent = `${cell.labels.join(' · ')} = ${Number(cell.value).toPrecision(4)}. ${meaning(r, this.view.key, cell.value, patch)}${spread}`;
  }

  /** The mean so far, while a dataset runs. */
  async showPartial({ grid, axes }, stage) {
    if (axes.length === 3) return;
    $('#results-empty').hidden = true;
    $('#results').hidden = false;
    const flatValues = flat(grid);
    const limit = Math.max(1e-12, ...flatValues.filter(Number.isFinite).map(Math.abs));
    this.view = null;
    await this.heatmap.show({ grid, axes, title: `mean so far (${stage})`, label: 'effect', limit });
  }

  /** Outlines known head classes on a layer × head view; `classes` is [{name, heads}]. */
  overlay(classes) {
    this.classes = classes;
    const legend = $('#class-legend');
    legend.replaceChildren();
    const axes = this.view?.axes;
    if (!classes || !axes || axes.length !== 2 || axes[0].name !== 'layer' || axes[1].name !== 'head_index') return;
    const n = axes[1].labels.length;
    const outlines = [];
    classes.forEach((c, i) => {
      const color = CLASS_COLORS[i % CLASS_COLORS.length];
      for (const [l, h] of c.heads) if (l < axes[0].labels.length && h < n) outlines.push([l * n + h, color]);
      const item = el('li', { text: `${c.name}: ${c.heads.map(([l, h]) => `${l}.${h}`).join(', ')}` });
      item.style.setProperty('--swatch', color);
      legend.append(item);
    });
    this.heatmap.marks(outlines);
  }

  /** Labels of a cell along every axis of the full grid. */
  fullLabels(cell) {
    const r = this.results;
    const full = this.view.toFull(cell.cell);
    const shape = r.axes.map((a) => a.labels.length);
    const index = [];
    let rest = full;
    for (let a = shape.length - 1; a >= 0; a--) {
      index[a] = rest % shape[a];
      rest = Math.floor(rest / shape[a]);
    }
    return index.map((i, a) => r.axes[a].labels[i]);
  }

  /** Clicking a cell: a head shows its attention patterns; a position shows its heads. */
  async select(cell) {
    const r = this.results;
    const full = this.view.toFull(cell);
    const labels = this.fullLabels({ cell });
    const at = Object.fromEntries(r.axes.map((a, i) => [a.name, labels[i]]));
    await this.inspect?.({ results: r, cell: full, at, patch: describePatch(r, labels, r.axes) });
  }

  async exportPng() {
    return this.heatmap.png();
  }

  exportSvg() {
    return this.heatmap.svg();
  }
}

export { HEAD_COMPONENTS };
