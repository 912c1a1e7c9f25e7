// The compare view: the same experiment under two methodological choices (STR vs GN,
// probability vs logit difference, single layer vs window, denoising vs noising), side by side on
// one colour scale, with their difference, each side's top components, and the rank correlation
// between them: the paper's central point, made into a feature.

import { $, el, say } from './dom.js';
import { HeatmapView } from './heatmap-view.js';
import { describePatch } from './results.js';

const STREAM = ['resid_pre', 'resid_mid', 'resid_post', 'block_every'];

/**
 * The two specs of a comparison, with their captions. `kind` names one of the four contrasts,
 * or is `{ spec, captionA, captionB }`: the current spec against that one.
 */
export function variants(spec, kind, corruptedPositions) {
  if (typeof kind === 'object') {
    // The other spec may name only what differs; the rest is the current experiment's.
    const other = { ...structuredClone(spec), ...structuredClone(kind.spec), model: spec.model };
    return [spec, other, kind.captionA, kind.captionB];
  }
  const a = structuredClone(spec);
  const b = structuredClone(spec);
  a.attribution = false;
  b.attribution = false;
  switch (kind) {
    case 'corruption': {
      if (spec.prompts.some((p) => !p.corrupted)) {
        throw new Error('Give a corrupted prompt too: STR needs it, and its differing tokens are the ones GN noises.');
      }
      a.corruption = { method: 'str' };
      const gn = spec.corruption.method === 'gn' ? spec.corruption : { method: 'gn', positions: corruptedPositions, scale: 3, samples: 10 };
      b.corruption = gn;
      return [a, b, 'STR', `Gaussian noise (${gn.scale}σ, ${gn.samples} samples) on the same tokens`];
    }
    case 'metric':
      a.metric = { kind: 'prob', normalized: true };
      b.metric = { kind: 'logit_diff', normalized: true };
      return [a, b, 'Probability (normalized)', 'Logit difference (normalized)'];
    case 'window':
      if (STREAM.includes(spec.target.component)) {
        a.target = { component: 'mlp_out', positions: 'each' };
        b.target = { component: 'mlp_out', positions: 'each' };
      }
      a.window = null;
      b.window = { size: 3 };
      return [a, b, 'Single layers', 'Windows of 3 layers'];
    case 'direction':
      a.direction = 'denoising';
      b.direction = 'noising';
      return [a, b, 'Denoising (clean into corrupted)', 'Noising (corrupted into clean; necessary components read negative)'];
    default:
      throw new Error(`unknown comparison ${kind}`);
  }
}

function sliceOf(results, grid) {
  if (results.axes.length < 3) return { grid, axes: results.axes };
  const [a0, a1, a2] = results.axes;
  const last = (a0.name === 'component' ? a0 : a1).labels.length - 1;
  if (a0.name === 'component') return { grid: grid[last], axes: [a1, a2] };
  return { grid: grid.map((l) => l[last]), axes: [a0, a2] };
}

export class CompareView {
  constructor(worker, run) {
    this.worker = worker;
    this.run = run;
    this.views = ['#compare-a', '#compare-b', '#compare-diff'].map((id) => new HeatmapView($(id), worker));
  }

  async compare(spec, kind, corruptedPositions) {
    say($('#compare-error'), '');
    const [specA, specB, captionA, captionB] = variants(spec, kind, corruptedPositions);
    const a = await this.run(specA, `compare: ${captionA}`);
    const b = await this.run(specB, `compare: ${captionB}`);
    const cmp = await this.worker.call('compare', { a: a.grid, b: b.grid, k: 5 });
    this.last = { a, b, cmp };
    const A = sliceOf(a, a.grid);
    const B = sliceOf(b, b.grid);
    const D = sliceOf(a, cmp.difference);
    const flat = (g) => (Array.isArray(g) ? g.flatMap(flat) : [g]);
    const max = (g) => Math.max(1e-12, ...flat(g).filter(Number.isFinite).map(Math.abs));
    const shared = Math.max(max(A.grid), max(B.grid));
    $('#compare').hidden = false;
    $('#compare-a-caption').textContent = captionA;
    $('#compare-b-caption').textContent = captionB;
    await this.views[0].show({ ...A, title: captionA, label: 'effect', limit: shared });
    await this.views[1].show({ ...B, title: captionB, label: 'effect', limit: shared });
    await this.views[2].show({ ...D, title: 'difference', label: 'left − right', limit: max(D.grid) });
    const rho = cmp.spearman === null ? 'undefined (a constant grid)' : cmp.spearman.toFixed(3);
    $('#rank-correlation').textContent =
      `Rank correlation (Spearman) between the two grids: ${rho} over ${flat(a.grid).length} cells; ` +
      `their top-5 components overlap with Jaccard ${cmp.jaccard.toFixed(2)}.`;
    const list = (results, top, target) => {
      const shape = results.axes.map((x) => x.labels.length);
      const values = flat(results.grid);
      $(target).replaceChildren(
        ...top.map((cell) => {
          const index = [];
          let rest = cell;
          for (let i = shape.length - 1; i >= 0; i--) {
            index[i] = rest % shape[i];
            rest = Math.floor(rest / shape[i]);
          }
          const labels = index.map((i, axis) => results.axes[axis].labels[i]);
          return el('li', { text: `${describePatch(results, labels, results.axes)}: ${values[cell].toFixed(3)}` });
        }),
      );
    };
    list(a, cmp.top_a, '#top-a');
    list(b, cmp.top_b, '#top-b');
    return this.last;
  }
}
