// The results view: baselines, the heatmap of any grid of the results (effect, raw metric,
// window contrast, attribution, spread), a panel selector for three-axis grids, a sentence for
// the cell under the pointer, the detections, looking inside a cell, and exports. What each of
// these says, and every colour limit, comes from the core (crates/web's Shown): this file only
// shows it.

import { $, el, say } from './dom.js';
import { HeatmapView } from './heatmap-view.js';

/** Outline colours for known head classes (Okabe-Ito, colour-blind safe). */
const CLASS_COLORS = ['#E69F00', '#009E73', '#CC79A7', '#56B4E9', '#D55E00', '#000000'];
const SLOT = 'main';

export class ResultsView {
  constructor(worker, { inspect, drawn } = {}) {
    this.worker = worker;
    this.inspect = inspect;
    this.drawn = drawn;
    this.results = null;
    this.summary = null;
    this.drawing = null;
    /** Bumped on every new grid, so that an answer about an older one is dropped. */
    this.serial = 0;
    this.hint = $('#hover-text').textContent;
    this.heatmap = new HeatmapView($('#heatmap'), worker, {
      hover: (cell) => this.hover(cell),
      select: (cell) => this.select(cell),
    });
    $('#view').addEventListener('change', () => this.draw());
    $('#slice').addEventListener('change', () => this.draw());
    $('#grey-out').addEventListener('change', () => this.draw());
  }

  /** Shows results; `classes` outlines the loaded model's known head classes. */
  async show(results, { source = '', classes = false } = {}) {
    this.serial += 1;
    $('#hover-text').textContent = this.hint;
    const summary = await this.worker.call('show', { slot: SLOT, results, classes });
    this.results = results;
    this.classes = classes;
    this.summary = summary;
    $('#results-empty').hidden = true;
    $('#results').hidden = false;
    $('#detail').hidden = true;
    $('#results-title').textContent = summary.title;
    say($('#results-source'), source);
    say($('#results-warning'), summary.denominator_warning);
    say($('#results-attribution'), summary.attribution);
    this.showBaselines();
    $('#view').replaceChildren(...summary.views.map((v) => el('option', { text: v.label, attrs: { value: v.key } })));
    const slice = summary.slice;
    $('#slice').hidden = !slice;
    $('#slice-label').hidden = !slice;
    if (slice) {
      $('#slice-label').textContent = slice.label;
      $('#slice').replaceChildren(...slice.labels.map((l, i) => el('option', { text: `${i}: ${l}`, attrs: { value: String(i) } })));
      $('#slice').value = String(slice.default);
    }
    // A dataset's grid can grey out the cells that are not significant, by the core's test.
    const significance = summary.significance;
    $('#grey-row').hidden = !significance;
    $('#grey-label').textContent = significance?.label ?? '';
    $('#grey-summary').textContent = significance?.summary ?? '';
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
      row(['', `${this.summary.metric_label}${many}`, 'P(r)', "P(r′)", 'logit diff'], true),
      row(['Clean run', fmt(r.clean_metric), fmt(mean((p) => p.clean.prob_answer)), fmt(mean((p) => p.clean.prob_counter)), fmt(mean((p) => p.clean.logit_diff))]),
      row(['Corrupted run', fmt(r.corrupted_metric), fmt(mean((p) => p.corrupted.prob_answer)), fmt(mean((p) => p.corrupted.prob_counter)), fmt(mean((p) => p.corrupted.logit_diff))]),
    );
  }

  showDetected() {
    const { detected, detected_heading: heading } = this.summary;
    const box = $('#detected');
    box.replaceChildren();
    if (!detected.length) return;
    box.append(el('h3', { text: heading }));
    const list = el('ul', { classes: ['detected'] });
    for (const d of detected.slice(0, 12)) list.append(el('li', { text: d.text, classes: [d.positive ? 'positive' : 'negative'] }));
    box.append(list);
  }

  /** Draws the chosen view (and panel), as the core lays it out and scales it. */
  async draw() {
    const key = $('#view').value;
    const panel = this.summary.slice ? Number($('#slice').value) : null;
    const serial = ++this.serial;
    const drawing = await this.worker.call('draw', { slot: SLOT, key, panel });
    if (serial !== this.serial) return;
    $('#hover-text').textContent = this.hint;
    this.drawing = { ...drawing, key };
    await this.heatmap.paint(drawing);
    const greyed = this.summary.significance && $('#grey-out').checked ? drawing.greyed : [];
    this.heatmap.shade(greyed);
    this.outline(drawing);
    const { width, height, cells, full } = drawing;
    this.drawn?.({ width, height, cells, full, greyed, axes: drawing.axes.map((a) => a.name) });
  }

  /** Outlines known head classes, with a legend. */
  outline(drawing) {
    const legend = $('#class-legend');
    legend.replaceChildren(
      ...drawing.legend.map((text, i) => {
        const item = el('li', { text });
        item.style.setProperty('--swatch', CLASS_COLORS[i % CLASS_COLORS.length]);
        return item;
      }),
    );
    if (drawing.marks.length) this.heatmap.marks(drawing.marks.map(([cell, c]) => [cell, CLASS_COLORS[c % CLASS_COLORS.length]]));
  }

  async hover(cell) {
    if (!cell || !this.drawing) return;
    const serial = this.serial;
    const { key, full } = this.drawing;
    const text = await this.worker.call('hover', { slot: SLOT, key, cell: full[cell.cell] });
    if (serial === this.serial) $('#hover-text').textContent = text;
  }

  /** The mean so far, while a dataset runs: drawn by the core. */
  async showPartial(drawn) {
    this.serial += 1;
    this.drawing = null;
    $('#hover-text').textContent = this.hint;
    $('#results-empty').hidden = true;
    $('#results').hidden = false;
    await this.heatmap.paint(drawn);
  }

  /** Clicking a cell: a head shows its attention patterns; a position shows its heads. */
  async select(cell) {
    if (!this.drawing) return;
    const full = this.drawing.full[cell];
    const [at, patch] = await Promise.all([
      this.worker.call('inspect', { slot: SLOT, cell: full }),
      this.worker.call('describe', { slot: SLOT, cell: full }),
    ]);
    await this.inspect?.({ spec: this.summary.spec, cell: full, at, patch });
  }

  async exportPng() {
    return this.heatmap.png();
  }

  exportSvg() {
    return this.heatmap.svg();
  }
}
