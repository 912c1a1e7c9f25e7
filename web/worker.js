// The Web Worker that owns the model: it picks the backend, downloads checkpoints (with
// progress, and Cache Storage for remote files), and runs the wasm. The page talks to it
// through web/worker-client.js, so the UI never freezes. On the CPU, several such workers may
// share a run (web/worker-pool.js): each runs its part of every sweep, and their shards pass
// through the page.

import init, {
  initBackend,
  inferConfig,
  safetensorsStart,
  ModelStream,
  parseSpec,
  catalog,
  describeDetect,
  renderHeatmap,
  compareResults,
  hubFit,
  Session,
  Shown,
} from '../pkg/patchbay_web.js';

const CACHE_NAME = 'patchbay-models-v1';
let session = null;
/** The run in progress, if any: a Cancel message sets `cancelled`. */
let running = null;
/** The shared run in progress, if any: its place in the pool and the other workers' shards. */
let pooled = null;
/** Results the page shows, by slot (`main`, `detail`): the core's view of each. */
const shown = new Map();
/** The circuit found last (the core's `CircuitView`), drawn at any k on request. */
let circuitView = null;

const ready = init();

/** Posts download progress to the page, at most every 100 ms. */
let lastProgress = 0;
function progress(what, loaded, total, done = false) {
  const now = performance.now();
  if (done || now - lastProgress > 100) {
    lastProgress = now;
    self.postMessage({ progress: { kind: 'download', what, loaded, total, done } });
  }
}

function sameOrigin(url) {
  return new URL(url, self.location.href).origin === self.location.origin;
}

/** A network error message that says what likely happened. */
function unreachable(url, error) {
  const host = new URL(url, self.location.href).host;
  return new Error(
    `Could not download ${url}: the network failed, or ${host} does not allow this page to read it (CORS). ` +
      `Browser said: ${error.message}`,
  );
}

async function fetchResponse(url, init = {}) {
  let response;
  try {
    response = await fetch(url, init);
  } catch (error) {
    throw unreachable(url, error);
  }
  if (!response.ok) {
    const hint = response.status === 404 ? ' (no such file at that address)' : '';
    throw new Error(`${url} answered ${response.status} ${response.statusText}${hint}`);
  }
  return response;
}

/**
 * Streams the body at `url` into `consume(chunk, size)` chunk by chunk, with progress. `size` is
 * the file's size where the body cannot have been re-encoded on the way (this origin's files and
 * our own cache entries: a cross-origin Content-Encoding cannot be read), else undefined, and
 * the loader checks the length at the end. A remote file is written to Cache Storage as it is
 * read: Cache Storage pulls the body through `consume`, so reading keeps the pace of the slower
 * of the two and nothing piles up. If `consume` throws, the download stops and nothing is
 * cached. Returns whether it came from the cache, and `forget()`, which drops the cache entry
 * (for a file that turns out not to load).
 */
async function streamBody(url, what, consume) {
  const cache = sameOrigin(url) ? null : await caches.open(CACHE_NAME).catch(() => null);
  let response = cache ? await cache.match(url) : undefined;
  const fromCache = Boolean(response);
  const abort = new AbortController();
  if (!response) response = await fetchResponse(url, { signal: abort.signal });
  const length = Number(response.headers.get('content-length')) || 0;
  const size = length && (fromCache || sameOrigin(url)) ? length : undefined;
  const reader = response.body.getReader();
  let loaded = 0;
  const next = async () => {
    const { done, value } = await reader.read();
    if (!done) {
      consume(value, size);
      loaded += value.length;
      progress(what, loaded, length, false);
    }
    return { done, value };
  };
  const readAll = async () => {
    while (!(await next()).done);
  };
  const forget = () => (cache ? cache.delete(url).catch(() => {}) : Promise.resolve());
  try {
    if (cache && !fromCache) {
      let failure = null;
      const body = new ReadableStream(
        {
          async pull(controller) {
            try {
              const { done, value } = await next();
              if (done) controller.close();
              else controller.enqueue(value);
            } catch (error) {
              failure = error;
              controller.error(error);
            }
          },
        },
        { highWaterMark: 0 },
      );
      const headers = { 'content-type': 'application/octet-stream' };
      if (length) headers['content-length'] = String(length);
      try {
        await cache.put(url, new Response(body, { headers }));
      } catch (error) {
        if (failure) throw failure;
        // A full disk or a private window may refuse to cache; the model still loads.
        await readAll();
      }
    } else {
      await readAll();
    }
  } catch (error) {
    abort.abort();
    reader.cancel().catch(() => {});
    await forget();
    throw error;
  }
  progress(what, loaded, length, true);
  return { fromCache, forget };
}

/** The whole body at `url` (a config, a tokenizer), through streamBody: cached when remote. */
async function fetchBytes(url, what) {
  const chunks = [];
  const { fromCache } = await streamBody(url, what, (chunk) => chunks.push(chunk));
  const bytes = new Uint8Array(chunks.reduce((n, c) => n + c.length, 0));
  let offset = 0;
  for (const chunk of chunks) {
    bytes.set(chunk, offset);
    offset += chunk.length;
  }
  return { bytes, fromCache };
}

/**
 * A checkpoint of the shape `config` pushed into WebAssembly as it arrives (the core's
 * ModelStream), for Session.load.
 */
function modelStream(config) {
  let stream = null;
  return {
    push(chunk, size) {
      stream ??= new ModelStream(config, size);
      stream.push(chunk);
    },
    /** The stream, once every byte is in (an empty file gives an empty one), handed over. */
    done() {
      const whole = stream ?? new ModelStream(config, undefined);
      stream = null;
      return whole;
    },
    free() {
      stream?.free();
    },
  };
}

async function fetchOptional(url, what) {
  try {
    return (await fetchBytes(url, what)).bytes;
  } catch {
    return null;
  }
}

const decoder = new TextDecoder();

/** Size and cache state of a remote file, before downloading it. */
async function probe({ url, knownSize }) {
  const cache = await caches.open(CACHE_NAME).catch(() => null);
  const cached = cache ? await cache.match(url) : undefined;
  if (cached) return { size: Number(cached.headers.get('content-length')) || knownSize, cached: true };
  try {
    const head = await fetchResponse(url, { method: 'HEAD' });
    const size = Number(head.headers.get('x-linked-size') || head.headers.get('content-length'));
    return { size: size || knownSize, cached: false, exact: Boolean(size) };
  } catch (error) {
    return { size: knownSize, cached: false, exact: false, warning: error.message };
  }
}

/** The GPT-2 family on the Hub, from the core's catalog. */
let family = null;
function hubModel(id) {
  family ??= new Map(JSON.parse(catalog()).hub_models.map((m) => [m.id, m]));
  const model = family.get(id);
  if (!model) throw new Error(`${id} is not one of the GPT-2 family on the Hub`);
  return model;
}

/**
 * A family model's download size (the Hub's headers, else the catalog's), whether it is cached,
 * and whether this backend and a device of `deviceMemory` GiB hold it (the core's hubFit).
 */
async function hubCheck({ id, deviceMemory }) {
  const model = hubModel(id);
  const size = await probe({ url: model.base + 'model.safetensors', knownSize: model.weights_bytes });
  return { ...size, fit: JSON.parse(hubFit(id, size.size, deviceMemory ?? undefined)) };
}

/** GPT-2's tokenizer, which ships with the app for checkpoints that come without one. */
const APP_TOKENIZER = new URL('../models/gpt2-tokenizer.json', import.meta.url).href;

/** Loads a Hub-layout folder at `base` (ending in /); `weights` overrides model.safetensors. */
async function loadFolder(base, weightsUrl = base + 'model.safetensors') {
  const config = decoder.decode((await fetchBytes(base + 'config.json', 'config.json')).bytes);
  let tokenizer = await fetchOptional(base + 'tokenizer.json', 'tokenizer.json');
  let vocab = null;
  let merges = null;
  let note = '';
  if (!tokenizer) {
    const v = await fetchOptional(base + 'vocab.json', 'vocab.json');
    const m = v && (await fetchOptional(base + 'merges.txt', 'merges.txt'));
    if (v && m) {
      vocab = decoder.decode(v);
      merges = decoder.decode(m);
    } else {
      // No tokenizer files in the folder: GPT-2's own, as for local files. A missing
      // tokenizer is no fault; a missing model.safetensors still says so below.
      tokenizer = (await fetchBytes(APP_TOKENIZER, 'tokenizer.json')).bytes;
      note = '; no tokenizer files there: GPT-2 tokenizer from the app';
    }
  }
  // The folder's known circuit, if it ships one (the app's own models do).
  const circuits = await fetchOptional(base + 'circuits.json', 'circuits.json');
  requireIdle();
  const weights = modelStream(config);
  let body = null;
  try {
    body = await streamBody(weightsUrl, 'model.safetensors', (chunk, size) => weights.push(chunk, size));
    const origin = sameOrigin(weightsUrl) ? 'shipped with the app' : body.fromCache ? 'from the browser cache' : 'downloaded';
    return open(weights, tokenizer, vocab, merges, circuits && decoder.decode(circuits), origin + note);
  } catch (error) {
    weights.free();
    // A file that does not load is not kept for the next visit.
    await body?.forget();
    throw error;
  }
}

/** Loads files the user picked: model.safetensors, and config.json / tokenizer files if given. */
async function loadFiles(files) {
  const byName = new Map(files.map((f) => [f.name, f]));
  const weightsFile = files.find((f) => f.name.endsWith('.safetensors'));
  if (!weightsFile) throw new Error('Pick a .safetensors file (the model weights), with config.json if you have it.');
  const text = async (name) => (byName.has(name) ? await byName.get(name).text() : null);
  const bytes = async (blob) => new Uint8Array(await blob.arrayBuffer());
  let config = await text('config.json');
  let note = '';
  if (config === null) {
    // The shape from the header alone: the file's first bytes, up to its tensor data.
    const start = safetensorsStart(await bytes(weightsFile.slice(0, 8)), weightsFile.size);
    config = inferConfig(await bytes(weightsFile.slice(0, start)), weightsFile.size);
    note = ' (no config.json: shape read from the weights, 64-dimensional heads assumed as in every GPT-2)';
  }
  let tokenizer = byName.has('tokenizer.json') ? await bytes(byName.get('tokenizer.json')) : null;
  const vocab = await text('vocab.json');
  const merges = await text('merges.txt');
  if (!tokenizer && !(vocab && merges)) {
    // GPT-2's own tokenizer ships with the app.
    tokenizer = (await fetchBytes(APP_TOKENIZER, 'tokenizer.json')).bytes;
    note += '; GPT-2 tokenizer from the app';
  }
  const circuits = await text('circuits.json');
  requireIdle();
  const weights = modelStream(config);
  try {
    const reader = weightsFile.stream().getReader();
    let loaded = 0;
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      weights.push(value, weightsFile.size);
      loaded += value.length;
      progress(weightsFile.name, loaded, weightsFile.size);
    }
    progress(weightsFile.name, loaded, weightsFile.size, true);
    return open(weights, tokenizer, vocab, merges, circuits, `from ${weightsFile.name}${note}`);
  } catch (error) {
    weights.free();
    throw error;
  }
}

function requireIdle() {
  if (running) throw new Error('Wait for the running experiment to finish, or cancel it, before loading another model.');
}

/** The model `weights` (a modelStream) has read; the stream is handed to the core only here. */
function open(weights, tokenizer, vocab, merges, circuits, origin) {
  requireIdle();
  // The previous model stays until the new one has loaded: a failed load leaves it usable.
  const next = Session.load(weights.done(), tokenizer, vocab, merges, circuits ?? undefined);
  session?.free();
  session = next;
  return { info: session.info(), origin };
}

function requireSession() {
  if (!session) throw new Error('No model is loaded yet.');
  return session;
}

/** Runs a long command of the session (`start(progress)` resolves to JSON), one at a time, with progress and Cancel. */
async function longRun(start) {
  requireSession();
  if (running) throw new Error('An experiment is already running.');
  running = { cancelled: false };
  const started = performance.now();
  try {
    const progress = (done, total, stage) => {
      self.postMessage({ progress: { kind: 'run', done, total, stage, elapsed: performance.now() - started } });
      // Yield to the event loop so that a Cancel message can arrive, then answer.
      return new Promise((resolve) => setTimeout(() => resolve(!running.cancelled), 0));
    };
    return JSON.parse(await start(progress));
  } finally {
    running = null;
  }
}

const commands = {
  async init({ useGpu, bindingCap }) {
    let adapter = null;
    if (useGpu && self.navigator.gpu) {
      try {
        adapter = await self.navigator.gpu.requestAdapter({ powerPreference: 'high-performance' });
      } catch {
        adapter = null;
      }
    }
    const info = await initBackend(Boolean(adapter), bindingCap ?? undefined);
    // wgpu does not see the browser adapter's name; GPUAdapterInfo has it.
    const about = adapter?.info;
    if (info.kind === 'wgpu' && about) {
      const name = [about.vendor, about.architecture, about.description].filter(Boolean).join(' ');
      if (name) info.description = `WebGPU on ${name}${adapter.info.isFallbackAdapter ? ' (a software adapter)' : ''}`;
    }
    return info;
  },
  hubCheck,
  async load({ source }) {
    if (source.kind === 'hub') {
      // Refused before anything is downloaded when this device cannot hold it.
      const { fit } = await hubCheck(source);
      if (fit.verdict === 'does_not_fit') throw new Error(fit.message);
      return loadFolder(hubModel(source.id).base);
    }
    if (source.kind === 'folder') return loadFolder(source.base, source.weights);
    if (source.kind === 'files') return loadFiles(source.files);
    throw new Error(`unknown source ${source.kind}`);
  },
  /** A seeded GPT-2 of one of the family's shapes, built here (bench.html): no download. */
  async seeded({ shape, seed }) {
    requireIdle();
    const tokenizer = (await fetchBytes(APP_TOKENIZER, 'tokenizer.json')).bytes;
    requireIdle();
    const next = Session.seeded(shape, seed, tokenizer);
    session?.free();
    session = next;
    return { info: session.info() };
  },
  tokenize: ({ text, bos }) => requireSession().tokenize(text, bos),
  async predict({ text, bos, k }) {
    const result = await requireSession().nextTokens(text, bos, k);
    result.logits = Array.from(result.logits);
    return result;
  },
  catalog: () => JSON.parse(catalog()),
  describeDetect: ({ detect }) => describeDetect(JSON.stringify(detect)),
  // Specs cross as JSON text: the canonical text (Rust's) is what links carry and what runs.
  parseSpec: ({ spec }) => parseSpec(spec),
  check: ({ spec }) => requireSession().check(spec),
  size: async ({ spec }) => JSON.parse(await requireSession().size(spec)),
  /** How many workers should share each run with this model here (the core's poolSize). */
  poolSize: ({ cores, deviceMemory, requested }) =>
    requireSession().poolSize(cores ?? 1, deviceMemory ?? undefined, requested ?? undefined),
  /** Runs a spec, alone or as worker `pool.index` of `pool.count`. */
  async run({ spec, pool }) {
    const model = requireSession();
    if (running) throw new Error('An experiment is already running.');
    running = { cancelled: false };
    pooled = pool ? sharedRun(pool) : null;
    const started = performance.now();
    // The exact spec text handed to the core, for the page (and its tests) to see.
    self.postMessage({ started: spec });
    try {
      const progress = (done, total, stage, partial) => {
        self.postMessage({
          progress: { kind: 'run', done, total, stage, elapsed: performance.now() - started, partial: partial ? JSON.parse(partial) : null },
        });
        // Yield to the event loop so that a Cancel message can arrive, then answer.
        return new Promise((resolve) => setTimeout(() => resolve(!running.cancelled), 0));
      };
      return JSON.parse(await model.run(spec, progress, pooled?.core));
    } finally {
      pooled?.cancel();
      running = null;
      pooled = null;
    }
  },
  sensitivity: ({ spec, choices }) => longRun((progress) => requireSession().sensitivity(spec, JSON.stringify(choices), progress)),
  lens: ({ spec }) => longRun((progress) => requireSession().lens(spec, progress)),
  circuit: ({ spec }) =>
    longRun(async (progress) => {
      const view = await requireSession().circuit(spec, progress);
      circuitView?.free();
      circuitView = view;
      return view.summary();
    }),
  circuitJson: () => requireCircuit().json(),
  circuitDraw: ({ k }) => JSON.parse(requireCircuit().draw(k)),
  circuitHover: ({ rank }) => requireCircuit().hover(rank),
  classes: () => JSON.parse(requireSession().classes()),
  cancel() {
    if (running) running.cancelled = true;
    pooled?.cancel();
    return Boolean(running);
  },
  async headPatterns({ spec, cell, layer, head }) {
    return JSON.parse(await requireSession().headPatterns(spec, cell, layer, head));
  },
  script: async ({ spec, to }) => JSON.parse(await requireSession().exportScript(spec, to)),
  // Results on show: `classes` asks for the loaded model's known head classes to be outlined.
  show({ slot, results, classes }) {
    const known = classes && session ? session.classes() : undefined;
    const view = new Shown(JSON.stringify(results), known);
    shown.get(slot)?.free();
    shown.set(slot, view);
    return JSON.parse(view.summary());
  },
  draw: ({ slot, key, panel }) => JSON.parse(shownIn(slot).draw(key, panel ?? undefined)),
  hover: ({ slot, key, cell }) => shownIn(slot).hover(key, cell),
  describe: ({ slot, cell }) => shownIn(slot).describe(cell),
  inspect: ({ slot, cell }) => JSON.parse(shownIn(slot).inspect(cell)),
  csv: ({ slot, key }) => shownIn(slot).csv(key),
  // A link's grid digest: made from the results shown, checked when a link opens, compared after its rerun.
  digest: ({ slot, backend }) => shownIn(slot).digest(backend),
  checkDigest: ({ digest }) => Shown.checkDigest(digest),
  reproduce: ({ slot, digest, backend }) => JSON.parse(shownIn(slot).reproduce(digest, backend)),
  render: ({ grid, axes, title, label, limit }) =>
    JSON.parse(renderHeatmap(JSON.stringify(grid), JSON.stringify(axes), title, label, limit)),
  compare: ({ a, b, k, captionA, captionB }) =>
    JSON.parse(compareResults(JSON.stringify(a), JSON.stringify(b), k, captionA, captionB)),
};

/**
 * This worker's part in shared run number `run`: `core` is what Session.run takes, whose `exchange` posts
 * this worker's shard of a sweep to the page (which passes it to every other worker) and
 * resolves once every other worker's shard of that sweep has arrived, or to null on Cancel.
 */
function sharedRun({ index, count, run }) {
  const arrived = new Map();
  let waiting = null;
  let cancelled = false;
  const check = () => {
    if (!waiting) return;
    if (cancelled) {
      waiting.resolve(null);
      waiting = null;
      return;
    }
    const shards = arrived.get(waiting.call) ?? [];
    if (shards.length === count - 1) {
      arrived.delete(waiting.call);
      waiting.resolve(shards);
      waiting = null;
    }
  };
  return {
    core: {
      index,
      count,
      exchange(call, patches, values) {
        self.postMessage({ shard: { run, call, patches, values } }, [patches.buffer, values.buffer]);
        return new Promise((resolve) => {
          waiting = { call, resolve };
          check();
        });
      },
    },
    /** Another worker's shard, passed on by the page (one of an earlier, cancelled run is dropped). */
    receive(shard) {
      const { call, patches, values } = shard;
      if (shard.run !== run) return;
      if (!arrived.has(call)) arrived.set(call, []);
      arrived.get(call).push({ patches, values });
      check();
    },
    cancel() {
      cancelled = true;
      check();
    },
  };
}

function requireCircuit() {
  if (!circuitView) throw new Error('No circuit has been found yet.');
  return circuitView;
}

function shownIn(slot) {
  const view = shown.get(slot);
  if (!view) throw new Error('No results are shown.');
  return view;
}

// A panic in the wasm ends in a trap (`WebAssembly.RuntimeError`), after which the instance's
// state cannot be trusted. The trap may surface in the command's own call or, inside an async
// run, as an uncaught error of the worker. Either way every command in flight, and every later
// one, gets "internal error" with the panic's message, marked `crashed`: the page then replaces
// this worker, and reloads the module and the model, on its next action.

/** Set once the instance has trapped: the message every command gets from then on. */
let crashed = null;
/** Commands not yet answered. */
const inFlight = new Set();

function crash(error) {
  if (!crashed) {
    const panic = self.patchbayPanic;
    const what = panic ?? `${error?.name ?? 'Error'}: ${error?.message ?? String(error)}`;
    crashed = `Internal error in Patchbay (a bug, not a fault of your input): ${what}. The model is reloaded on your next action.`;
    console.warn(crashed);
  }
  for (const id of inFlight) self.postMessage({ id, ok: false, error: crashed, crashed: true });
  inFlight.clear();
}

self.addEventListener('error', (event) => {
  event.preventDefault();
  crash(event.error ?? new Error(event.message));
});
self.addEventListener('unhandledrejection', (event) => {
  event.preventDefault();
  crash(event.reason);
});

self.onmessage = async ({ data }) => {
  // Another worker's shard of the shared run (no answer is due).
  if (data.peer) {
    pooled?.receive(data.peer);
    return;
  }
  const { id, cmd, args } = data;
  if (crashed) {
    self.postMessage({ id, ok: false, error: crashed, crashed: true });
    return;
  }
  inFlight.add(id);
  try {
    await ready;
    const result = await commands[cmd](args ?? {});
    if (inFlight.delete(id)) self.postMessage({ id, ok: true, result });
  } catch (error) {
    if (error instanceof WebAssembly.RuntimeError) crash(error);
    else if (inFlight.delete(id)) self.postMessage({ id, ok: false, error: error?.message ?? String(error), field: error?.field ?? null });
  }
};
