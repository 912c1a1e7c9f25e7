// A seeded generator of random valid experiment specs for the model that ships with the app
// (patchbay-ioi: 3 layers, 2 heads, a 64-token context): every target (the residual stream,
// attention and MLP outputs, heads with each/all/lists, block_every, path patching to the logits
// and to receiver heads' q, k or v at chosen positions), head and position lists, STR and GN
// (chosen or default positions, scales, samples, σ texts), windows, generated datasets (IOI of one
// template or all of them), prompts of different lengths, both dataset normalizations,
// detection rules (σ, threshold, significance), statistics settings, attribution, noising,
// every metric, answer sets, prepend_bos on and off, circuit blocks (EAP or EAP-IG, steps, top k
// or a threshold, edges checked), and seeds beyond 2^53. Each spec is written as JSON text,
// partly leaning on the spec's defaults.
// Prompts of different lengths name no positions (the core refuses position numbers for them).

/** mulberry32: a small seeded generator of floats in [0, 1). */
export function random(seed) {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

const IOI = [
  {
    clean: 'When Mary and John went to the store, John gave a drink to',
    corrupted: 'When Mary and John went to the store, Mary gave a drink to',
    answer: ' Mary',
    counter_answer: ' John',
  },
  {
    clean: 'When Anna and Tom went to the store, Tom gave a drink to',
    corrupted: 'When Anna and Tom went to the store, Anna gave a drink to',
    answer: ' Anna',
    counter_answer: ' Tom',
  },
];
/** An IOI pair longer than the others: with them, prompts of different lengths. */
const IOI_LONG = {
  clean: 'Then, Mary and John had a lot of fun at the store. John gave a drink to',
  corrupted: 'Then, Mary and John had a lot of fun at the store. Mary gave a drink to',
  answer: ' Mary',
  counter_answer: ' John',
};
const GREATER = {
  clean: 'The war lasted from the year 1732 to the year 17',
  corrupted: 'The war lasted from the year 1701 to the year 17',
  answer: '89',
  counter_answer: '12',
};
const COMPONENTS = ['resid_pre', 'resid_mid', 'resid_post', 'attn_out', 'mlp_out', 'z', 'q', 'k', 'v', 'pattern', 'block_every', 'path'];
const HEADS = ['z', 'q', 'k', 'v', 'pattern'];
const WINDOWED = ['attn_out', 'mlp_out', ...HEADS];
/** Every generated prompt has at least 12 tokens: positions below 10 are always in range. */
const MAX_POSITION = 10;
/** A u64 seed JavaScript's numbers cannot hold exactly. */
const BIG_SEED = '18446744073709551557';

export function randomSpec(r) {
  const pick = (items) => items[Math.floor(r() * items.length)];
  const chance = (p) => r() < p;
  const int = (n) => Math.floor(r() * n);
  /** A sorted non-empty subset of 0..n-1. */
  const subset = (n) => {
    const set = new Set([int(n)]);
    while (chance(0.4)) set.add(int(n));
    return [...set].sort((a, b) => a - b);
  };
  const seed = () => pick([0, 1, 7, 123456789, 2 ** 40, '__BIG__']);
  const spec = { version: 1, model: { embedded: 'patchbay-ioi' } };
  if (chance(0.6)) spec.prepend_bos = chance(0.5);

  const kind = r();
  let prompts = kind < 0.45 ? [pick(IOI)] : kind < 0.6 ? IOI : kind < 0.75 ? [...IOI, IOI_LONG] : [GREATER];
  let mixed = prompts.includes(IOI_LONG);
  prompts = prompts.map((p) => ({ ...p }));
  if (prompts[0] !== GREATER && chance(0.25)) {
    for (const p of prompts) {
      p.answer_set = [' Mary', ' Anna'];
      p.counter_set = [' John', ' Tom'];
    }
  }
  if (chance(0.25)) {
    const task = pick(['ioi', 'greater_than', 'induction']);
    spec.dataset = { task, n: 1 + int(3) };
    if (chance(0.7)) spec.dataset.seed = seed();
    if (task === 'ioi' || chance(0.2)) {
      if (chance(0.7)) spec.dataset.names = pick(['s2', 's1_io', 'abc']);
      if (chance(0.7)) spec.dataset.template = task === 'ioi' && chance(0.3) ? 'all' : int(15);
    }
    mixed = spec.dataset.template === 'all';
    // The generated prompts replace any listed ones, which the spec may still carry.
    spec.prompts = chance(0.2) ? prompts : [];
  } else {
    spec.prompts = prompts;
  }

  if (chance(0.55)) {
    spec.corruption = { method: 'str' };
  } else {
    const gn = { method: 'gn', positions: mixed || chance(0.5) ? [] : subset(MAX_POSITION) };
    if (chance(0.6)) gn.scale = pick([0, 0.5, 1, 2.5, 3, 7.25, 1e-3]);
    if (chance(0.6)) gn.samples = 1 + int(3);
    if (chance(0.3)) gn.sigma_texts = pick([[' Mary', ' John'], ['hello world'], [' the store', ' a drink']]);
    spec.corruption = gn;
  }
  spec.metric = { kind: pick(['logit_diff', 'prob', 'kl', 'prob_diff']) };
  if (chance(0.6)) spec.metric.normalized = chance(0.5);
  if (chance(0.3)) spec.metric.normalize = pick(['ratio_of_means', 'per_prompt']);
  if (chance(0.6)) spec.direction = pick(['denoising', 'noising']);

  const component = pick(COMPONENTS);
  const target = { component };
  if (component === 'path') {
    if (chance(0.4)) {
      target.receivers = 'logits';
    } else {
      // One receiver head or two different ones (a list names each entry once).
      const first = int(6);
      const heads = [first, ...(chance(0.4) ? [(first + 1 + int(5)) % 6] : [])].map((i) => [Math.floor(i / 2), i % 2]);
      target.receivers = { heads, input: pick(['q', 'k', 'v']) };
      if (chance(0.5)) target.receivers.positions = subset(MAX_POSITION);
    }
  } else {
    if (chance(0.8)) target.positions = pick(['each', 'all', ...(mixed ? [] : [subset(MAX_POSITION)])]);
    if (HEADS.includes(component) && chance(0.8)) target.heads = pick(['each', 'all', [0], [1], [0, 1]]);
    else if (chance(0.2)) target.heads = 'each';
  }
  spec.target = target;
  if (WINDOWED.includes(component) && chance(0.35)) spec.window = { size: 1 + int(3) };
  else if (chance(0.3)) spec.window = null;
  if (chance(0.6)) spec.seed = seed();
  // Attribution is not defined for path patching.
  if (component !== 'path' && chance(0.2)) spec.attribution = true;
  else if (chance(0.2)) spec.attribution = false;
  // Significance tests each cell over the prompts: it needs two or more.
  const many = spec.dataset ? spec.dataset.n > 1 : spec.prompts.length > 1;
  if (chance(0.5)) {
    spec.detect = pick([
      { sigma: 1.5 },
      { sigma: 2 },
      { sigma: 3.25 },
      { threshold: 0.05 },
      { threshold: 0.2 },
      { threshold: 0.35 },
      ...(many ? [{ significant: { alpha: 0.01 } }, { significant: { alpha: 0.05, correction: 'bh', min_effect: 0.2 } }] : []),
    ]);
  }
  if (chance(0.15)) {
    spec.stats = {};
    if (chance(0.6)) spec.stats.level = pick([0.9, 0.99]);
    if (chance(0.6)) spec.stats.resamples = pick([100, 2500]);
    if (chance(0.6)) spec.stats.permutations = pick([500, 20000]);
    if (chance(0.6)) spec.stats.seed = seed();
  }
  // The circuit block (`patchbay circuit` and the page's circuit panel read it); ig_steps is
  // EAP-IG's alone.
  if (chance(0.2)) {
    spec.circuit = {};
    if (chance(0.6)) spec.circuit.method = pick(['eap', 'eap_ig']);
    if (spec.circuit.method === 'eap_ig' && chance(0.6)) spec.circuit.ig_steps = 1 + int(10);
    if (chance(0.6)) spec.circuit.keep = chance(0.7) ? { top: 1 + int(100) } : { threshold: pick([0, 0.01, 0.5, 2.25]) };
    if (chance(0.5)) spec.circuit.checked = int(60);
  }
  return JSON.stringify(spec).replaceAll('"__BIG__"', BIG_SEED);
}
