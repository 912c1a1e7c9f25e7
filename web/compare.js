// The compare view: the same experiment under two methodological choices (STR vs GN,
// probability vs logit difference, single layer vs window, denoising vs noising), side by side on
// one colour scale, with their difference, each side's top components, and the rank correlation
// between them: the paper's central point, made into a feature. The core compares, describes
// and draws them; this file picks the two specs.

import { $, el, say } from './dom.js';
import { HeatmapView } from './heatmap-view.js';
import { cloneSpec, specText } from './spec.js';

/**
 * The two specs of a comparison, with their captions. `kind` names one of the four contrasts,
 * or is `{ spec, captionA, captionB }`: the current spec against that one. `catalog` is the
 * core's (GN's defaults, which components take a window).
 */
export function variants(spec, kind, catalog) {
  if (typeof kind === 'object') {
    // The other spec may name only what differs; the rest is the current experiment's.
    const other = { ...cloneSpec(spec), ...cloneSpec(kind.spec), model: spec.model };
    return [spec, other, kind.captionA, kind.captionB];
  }
  const a = cloneSpec(spec);
  const b = cloneSpec(spec);
  a.attribution = false;
  b.attribution = false;
  switch (kind) {
    case 'corruption': {
      a.corruption = { method: 'str' };
      // No positions: the core noises the tokens STR changes.
      const gn = spec.corruption.method === 'gn' ? spec.corruption : { method: 'gn', positions: [], ...catalog.gn };
      b.corruption = gn;
      return [a, b, 'STR', `Gaussian noise (${gn.scale}σ, ${gn.samples} samples) on the same tokens`];
    }
    case 'metric':
      a.metric = { kind: 'prob', normalized: true };
      b.metric = { kind: 'logit_diff', normalized: true };
      return [a, b, 'Probability (normalized)', 'Logit difference (normalized)'];
    case 'window': {
      const component = catalog.components.find((c) => c.name === spec.target.component);
      if (!component?.takes_window) {
        a.target = { component: 'mlp_out', positions: 'each' };
        b.target = { component: 'mlp_out', positions: 'each' };
      }
      a.window = null;
      b.window = { size: 3 };
      return [a, b, 'Single layers', 'Windows of 3 layers'];
    }
    case 'direction':
      a.direction = 'denoising';
      b.direction = 'noising';
      return [a, b, 'Denoising (clean into corrupted)', 'Noising (corrupted into clean; necessary components read negative)'];
    default:
      throw new Error(`unknown comparison ${kind}`);
  }
}

export class CompareView {
  constructor(worker, run, catalog) {
    this.worker = worker;
    this.run = run;
    this.catalog = catalog;
    this.views = ['#compare-a', '#compare-b', '#compare-diff'].map((id) => new HeatmapView($(id), worker));
  }

  async compare(spec, kind) {
    say($('#compare-error'), '');
    const [specA, specB, captionA, captionB] = variants(spec, kind, this.catalog);
    const a = await this.run(specText(specA), `compare: ${captionA}`);
    const b = await this.run(specText(specB), `compare: ${captionB}`);
    const cmp = await this.worker.call('compare', { a, b, k: 5, captionA, captionB });
    this.last = { a, b, cmp };
    $('#compare').hidden = false;
    $('#compare-a-caption').textContent = captionA;
    $('#compare-b-caption').textContent = captionB;
    await this.views[0].paint(cmp.a);
    await this.views[1].paint(cmp.b);
    await this.views[2].paint(cmp.diff);
    const rho = cmp.spearman === null ? 'undefined (a constant grid)' : cmp.spearman.toFixed(3);
    $('#rank-correlation').textContent =
      `Rank correlation (Spearman) between the two grids: ${rho} over ${cmp.cells} cells; ` +
      `their top-5 components overlap with Jaccard ${cmp.jaccard.toFixed(2)}.`;
    $('#top-a').replaceChildren(...cmp.top_a_text.map((text) => el('li', { text })));
    $('#top-b').replaceChildren(...cmp.top_b_text.map((text) => el('li', { text })));
    return this.last;
  }
}
