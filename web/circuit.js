// The circuit panel. Its settings are the experiment's `circuit` block, held in the editor's
// spec (so that Share carries them, and a link's block shows here); its menus, defaults and
// limits come from the core's catalog. "Find the circuit" runs the core's discovery in the
// worker; the view is the core's: the SVG of the top k edges (parsed, never inserted as HTML),
// each edge's hover text, the faithfulness curve and the disagreements in words.

import { $, el, say } from './dom.js';

/** SVG text drawn by the core, as an element of this document. */
function svgElement(text) {
  const doc = new DOMParser().parseFromString(text, 'image/svg+xml');
  if (doc.querySelector('parsererror')) throw new Error('The circuit drawing could not be read.');
  return document.importNode(doc.documentElement, true);
}

/** A whole number from an input, or null. */
function whole(input) {
  const text = input.value.trim();
  return /^\d+$/.test(text) ? Number(text) : null;
}

export class CircuitPanel {
  /**
   * @param worker  the WorkerClient
   * @param catalog the core's choices (`catalog.circuit`: methods, keep, defaults, limits)
   * @param editor  the Editor, whose held spec carries the `circuit` block
   * @param options `run(cmd, args, label)` runs a long worker command; `download(name, blob)`;
   *                `state` is the page's test-visible state
   */
  constructor(worker, catalog, editor, { run, download, state }) {
    this.worker = worker;
    this.c = catalog.circuit;
    this.editor = editor;
    this.run = run;
    this.download = download;
    this.state = state;
    this.summary = null;
    this.svg = null;
    this.drawing = Promise.resolve();
    this.populate();
    this.wire();
  }

  populate() {
    const options = (items) => items.map((x) => el('option', { text: x.label, attrs: { value: x.name } }));
    $('#circuit-method').replaceChildren(...options(this.c.methods));
    $('#circuit-keep').replaceChildren(...options(this.c.keep));
    $('#circuit-steps').max = String(this.c.limits.ig_steps);
    $('#circuit-checked').max = String(this.c.limits.checked);
    $('#circuit-qk-fix-label').textContent = this.c.qk_fix.label;
  }

  wire() {
    for (const id of ['#circuit-method', '#circuit-steps', '#circuit-qk-fix', '#circuit-keep', '#circuit-keep-value', '#circuit-checked']) {
      $(id).addEventListener('change', () => this.write());
    }
    $('#circuit-k').addEventListener('input', () => this.redraw());
    $('#circuit-graph').addEventListener('pointerover', (event) => {
      const rank = event.target.closest?.('line[data-rank]')?.dataset.rank;
      if (rank) this.hover(Number(rank)).catch((e) => say($('#circuit-error'), e.message));
    });
    $('#circuit-json').addEventListener('click', () => this.exportJson().catch((e) => say($('#circuit-error'), e.message)));
    $('#circuit-svg').addEventListener('click', () => this.download('circuit.svg', new Blob([this.svg], { type: 'image/svg+xml' })));
  }

  /** Shows the held spec's `circuit` block (or the defaults) in the controls, but the one in focus. */
  showSettings() {
    const block = this.editor.spec?.circuit ?? {};
    const d = this.c.defaults;
    const method = block.method ?? d.method;
    const keep = block.keep ?? { top: d.top };
    const [kind, value] = Object.entries(keep)[0];
    const values = {
      '#circuit-method': method,
      '#circuit-steps': String(block.ig_steps ?? d.ig_steps),
      '#circuit-keep': kind,
      '#circuit-keep-value': String(value),
      '#circuit-checked': String(block.checked ?? d.checked),
    };
    for (const [id, v] of Object.entries(values)) if (document.activeElement !== $(id)) $(id).value = v;
    $('#circuit-qk-fix').checked = block.qk_fix === true;
    this.enable(method);
  }

  /** EAP-IG's steps and the QK fix each belong to one method. */
  enable(method) {
    $('#circuit-steps').disabled = method !== 'eap_ig';
    $('#circuit-qk-fix').disabled = method !== this.c.qk_fix.method;
  }

  /** Writes the controls into the held spec's `circuit` block (keeping any field they do not show). */
  write() {
    say($('#circuit-error'), '');
    const method = $('#circuit-method').value;
    const steps = whole($('#circuit-steps'));
    const checked = whole($('#circuit-checked'));
    const kind = $('#circuit-keep').value;
    const raw = $('#circuit-keep-value').value.trim();
    const value = kind === 'top' ? whole($('#circuit-keep-value')) : raw === '' ? NaN : Number(raw);
    const bad =
      (method === 'eap_ig' && steps === null && 'EAP-IG steps must be a whole number') ||
      (checked === null && 'the edges checked must be a whole number') ||
      (kind === 'top' && value === null && 'k must be a whole number') ||
      (kind === 'threshold' && !Number.isFinite(value) && 'the threshold must be a number');
    if (bad) {
      say($('#circuit-error'), `Not written to the experiment: ${bad}.`);
      return;
    }
    this.editor.edit(null, () => {
      const block = { ...(this.editor.spec.circuit ?? {}), method, keep: { [kind]: value }, checked };
      if (method === 'eap_ig') block.ig_steps = steps;
      else delete block.ig_steps;
      if (method === this.c.qk_fix.method && $('#circuit-qk-fix').checked) block.qk_fix = true;
      else delete block.qk_fix;
      this.editor.spec.circuit = block;
    });
    this.enable(method);
  }

  /** Finds the circuit of the editor's experiment and shows it at the circuit's own k. */
  async find() {
    say($('#circuit-error'), '');
    const spec = await this.editor.canonical();
    this.state.circuitShown = null;
    const summary = await this.run('circuit', { spec }, 'circuit discovery');
    this.summary = summary;
    this.state.circuit = summary;
    $('#circuit').hidden = false;
    $('#circuit-summary').textContent = summary.text;
    $('#circuit-curve').replaceChildren(svgElement(summary.curve_svg));
    $('#circuit-disagreements').replaceChildren(...summary.disagreements.map((text) => el('li', { text })));
    const slider = $('#circuit-k');
    slider.max = String(summary.edges);
    slider.value = String(Math.min(Math.max(summary.kept, 1), summary.edges));
    await this.redraw();
  }

  /** Draws the top k edges, k from the slider; one drawing at a time, the latest k last. */
  redraw() {
    this.drawing = this.drawing.then(() => this.draw(Number($('#circuit-k').value))).catch((e) => say($('#circuit-error'), e.message));
    return this.drawing;
  }

  async draw(k) {
    const { svg, caption } = await this.worker.call('circuitDraw', { k });
    const drawing = svgElement(svg);
    // A wide transparent line over each edge, so that a thin one can be pointed at.
    for (const line of [...drawing.querySelectorAll('line[data-rank]')]) {
      const hit = line.cloneNode(false);
      hit.setAttribute('class', 'hit');
      line.after(hit);
    }
    $('#circuit-graph').replaceChildren(drawing);
    $('#circuit-k-value').textContent = String(k);
    $('#circuit-caption').textContent = caption;
    this.svg = svg;
    this.state.circuitShown = { k, edges: drawing.querySelectorAll('line.hit').length, caption };
  }

  async hover(rank) {
    const text = await this.worker.call('circuitHover', { rank });
    $('#circuit-hover').textContent = text;
    this.state.circuitHover = { rank, text };
  }

  async exportJson() {
    const text = await this.worker.call('circuitJson');
    this.state.circuitExport = text;
    this.download('circuit.json', new Blob([text], { type: 'application/json' }));
  }
}
