// The CPU warning's estimate against the time the page takes. A benchmark, not a test: it prints
// a Markdown table and asserts nothing.
//   node bench/estimate.mjs [DIST]
// In headless Chromium without WebGPU, with one worker (`?workers=1`, as the estimate assumes),
// it runs experiments on the shipped model and on the seeded GPT-2-small shape (`seeded`, built
// in the page, as bench.html does; without the runs that would take it an hour), each after
// asking the core for its size (`size`: the `cpu_seconds` the page's "slow on the CPU" question
// shows), and times the run in the page, from the call to its results (about 12 minutes in all). The estimate is a planning figure: what matters is that it is
// within a small factor of the time, on long runs and on short ones, on both shapes.

import { join, resolve } from 'node:path';
import { readFileSync } from 'node:fs';
import { launch, ROOT } from '../tests/e2e/lib.mjs';
import { serve } from '../tests/e2e/server.mjs';

const dist = resolve(process.argv[2] ?? join(ROOT, 'dist'));
const base = JSON.parse(readFileSync(join(ROOT, 'examples', 'resid_pre.json'), 'utf8'));
const factual = {
  clean: 'The Eiffel Tower is located in the city of',
  corrupted: 'The Colosseum is located in the city of',
  answer: ' Paris',
  counter_answer: ' Rome',
};
const gn = (positions, samples) => ({ method: 'gn', positions, scale: 3.0, samples });
const dataset = (n) => ({ prompts: [], dataset: { task: 'ioi', n, seed: 0, names: 's2', template: 0 } });

/** Experiments, as [name, changes to examples/resid_pre.json, whether to run it on GPT-2 small too]. */
const EXPERIMENTS = [
  ['IOI resid_pre', {}, true],
  ['IOI heads, all positions', { target: { component: 'z', positions: 'all' } }, true],
  ['factual resid_pre', { prompts: [factual] }, true],
  ['factual heads, all positions', { prompts: [factual], target: { component: 'z', positions: 'all' } }, true],
  ['IOI heads by position, KL', { metric: { kind: 'kl', normalized: false }, target: { component: 'z', positions: 'each' } }, true],
  ['mlp_out, window 3', { target: { component: 'mlp_out', positions: 'each' }, window: { size: 3 } }, true],
  ['IOI resid_pre, GN 8 samples', { corruption: gn([10], 8) }, true],
  ['IOI heads by position, GN 64 samples', { corruption: gn([2], 64), target: { component: 'z', positions: 'each' } }, false],
  ['100 IOI prompts, heads, all positions', { ...dataset(100), target: { component: 'z', positions: 'all' } }, true],
  ['100 IOI prompts, heads by position', { ...dataset(100), target: { component: 'z', positions: 'each' } }, false],
  ['1000 IOI prompts, heads by position, KL', { ...dataset(1000), metric: { kind: 'kl', normalized: false }, target: { component: 'z', positions: 'each' } }, false],
];

/** Per model: [label, how the page gets it (the shipped one, then a seeded shape), whether it is GPT-2 small]. */
const MODELS = [
  ['patchbay-ioi (shipped)', null, false],
  ['GPT-2-small shape (seeded)', { shape: 'gpt2-small', seed: 0 }, true],
];

const server = await serve(dist);
const context = await launch({ webgpu: false });
const lines = ['| model | experiment | estimate s | page s | estimate / page |', '|---|---|---|---|---|'];
try {
  const page = await context.newPage();
  await page.goto(`${server.url}?workers=1`);
  await page.waitForFunction(() => (window.patchbay?.results && !window.patchbay.running) || window.patchbay?.errors.length, null, { timeout: 600_000 });
  if ((await page.evaluate(() => window.patchbay.backend.kind)) !== 'cpu') throw new Error('the page is not on the CPU fallback');
  for (const [label, seeded, small] of MODELS) {
    if (seeded) await page.evaluate((args) => window.patchbayPool.call('seeded', args), seeded);
    for (const [name, changes, onSmall] of EXPERIMENTS) {
      if (small && !onSmall) continue;
      const spec = JSON.stringify({ ...base, ...changes });
      const { estimate, seconds } = await page.evaluate(async (spec) => {
        const pool = window.patchbayPool;
        const size = await pool.call('size', { spec });
        const start = performance.now();
        await pool.call('run', { spec });
        return { estimate: size.cpu_seconds, seconds: (performance.now() - start) / 1000 };
      }, spec);
      const line = `| ${label} | ${name} | ${estimate.toFixed(2)} | ${seconds.toFixed(2)} | ${(estimate / seconds).toFixed(2)} |`;
      console.log(line);
      lines.push(line);
    }
  }
} finally {
  await context.close();
  await server.close();
}
console.log(`\n${lines.join('\n')}`);
