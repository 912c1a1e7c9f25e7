// The model workers of the CPU fallback: the lead (the worker the page talks to) and helpers,
// each a Web Worker with its own WebAssembly instance and its own copy of the model. A run is
// shared: each worker runs its part of every sweep (the core's `Share`) and posts its shard,
// which this pool passes to every other worker; all of them end with the results a worker
// alone computes, and the page takes the lead's. Progress is the sum of the workers' own
// counts; Cancel reaches every worker, and so does the failure of any one. The pool's size is
// the core's (`poolSize`: the cores, and the model against the device's memory) or the page's
// `?workers=N`; on WebGPU the lead runs alone. Every other command goes to the lead only.

import { WorkerClient } from './worker-client.js';

/** The core's message for a cancelled run. */
const CANCELLED = 'the run was cancelled';
/** Commands that give the lead a model, which the helpers then load as well. */
const MODEL_COMMANDS = new Set(['load', 'seeded']);

export class WorkerPool {
  constructor(url, { requested = null } = {}) {
    this.url = url;
    this.requested = requested;
    this.lead = new WorkerClient(url);
    this.helpers = [];
    /** Helpers still loading their model (ended, too, when the model changes). */
    this.loading = new Set();
    /** The lead's `init` arguments, and whether it runs on WebGPU. */
    this.backend = null;
    this.onGpu = false;
    /** The lead's model: the command and arguments that loaded it, for helpers to load it too. */
    this.model = null;
    this.filling = Promise.resolve();
    this.generation = 0;
    this.runs = 0;
    this.onProgress = () => {};
    this.onStarted = () => {};
    /** Called when the pool's size changes. */
    this.onSize = () => {};
    this.listen();
  }

  /** The lead's messages, as the page sees them when no shared run is in progress. */
  listen() {
    this.lead.onProgress = (p) => this.onProgress(p);
    this.lead.onStarted = (spec) => this.onStarted(spec);
  }

  /** Restores a replaced lead (the page's `onRestart`); helpers keep their model. */
  set onRestart(restore) {
    this.lead.onRestart = restore;
  }

  /** How many workers share each run. */
  get size() {
    return 1 + this.helpers.length;
  }

  /** Resolves once the helpers for the model loaded last are ready. */
  settled() {
    return this.filling;
  }

  async call(cmd, args) {
    if (cmd === 'init') {
      const info = await this.lead.call(cmd, args);
      this.backend = args;
      this.onGpu = info.kind === 'wgpu';
      this.drop();
      return info;
    }
    if (cmd === 'run') return this.run(args);
    if (cmd === 'cancel') {
      for (const helper of this.helpers) if (!helper.crashed) helper.send('cancel').catch(() => {});
      return this.lead.call(cmd, args);
    }
    if (MODEL_COMMANDS.has(cmd)) return this.load(cmd, args);
    return this.lead.call(cmd, args);
  }

  /**
   * Gives the lead a model with `cmd(args)`, then the helpers. The helpers' copies of the model
   * before go first, so that a change of model never holds one more copy than a worker alone
   * would; if the lead's load fails, it keeps its model, and the helpers load that one again.
   */
  async load(cmd, args) {
    this.drop();
    let result;
    try {
      result = await this.lead.call(cmd, args);
    } catch (error) {
      if (this.model) this.filling = this.refill(this.model.cmd, this.model.args);
      throw error;
    }
    this.model = { cmd, args };
    this.filling = this.refill(cmd, args);
    return result;
  }

  /** Ends every helper, loaded or loading. */
  drop() {
    this.generation += 1;
    for (const helper of [...this.helpers, ...this.loading]) helper.terminate();
    const changed = this.helpers.length > 0;
    this.helpers = [];
    this.loading.clear();
    if (changed) this.onSize(this.size);
  }

  /** Ends the helpers in `gone` (they crashed, or failed a run). */
  remove(gone) {
    if (!gone.length) return;
    for (const helper of gone) helper.terminate();
    this.helpers = this.helpers.filter((h) => !gone.includes(h));
    this.onSize(this.size);
  }

  /**
   * Helpers for the model the lead has just loaded with `cmd(args)`, one at a time, up to the
   * pool's size; a helper that cannot load ends the pool there. A run started meanwhile shares
   * itself with the helpers ready by then.
   */
  async refill(cmd, args) {
    this.drop();
    const generation = this.generation;
    if (this.onGpu) return;
    const size = await this.lead
      .call('poolSize', { cores: navigator.hardwareConcurrency ?? 1, deviceMemory: navigator.deviceMemory ?? null, requested: this.requested })
      .catch(() => 1);
    while (this.size < size && generation === this.generation) {
      const helper = new WorkerClient(this.url);
      this.loading.add(helper);
      try {
        await helper.call('init', { ...this.backend, useGpu: false });
        await helper.call(cmd, args);
      } catch (error) {
        helper.terminate();
        if (generation === this.generation) {
          console.warn(`A helper worker could not load the model, so runs are shared by ${this.size}: ${error.message}`);
        }
        return;
      } finally {
        this.loading.delete(helper);
      }
      if (generation !== this.generation) {
        helper.terminate();
        return;
      }
      this.helpers.push(helper);
      this.onSize(this.size);
    }
  }

  /** Runs a spec on every worker of the pool; resolves to the lead's results. */
  async run(args) {
    // A lead being replaced after a crash takes its model first: a shard posted to it before
    // its run has begun would be lost.
    if (this.lead.crashed) await this.lead.restart();
    else if (this.lead.restarting) await this.lead.restarting;
    this.remove(this.helpers.filter((h) => h.crashed || h.restarting));
    const workers = [this.lead, ...this.helpers];
    if (workers.length === 1) return this.lead.call('run', args);
    const run = (this.runs += 1);
    const count = workers.length;
    const done = new Array(count).fill(0);
    const sum = () => done.reduce((a, b) => a + b, 0);
    const started = performance.now();
    // The lead's stages and partial grids; every worker's count of patches, at the pool's time.
    let last = null;
    this.lead.onProgress = (p) => {
      if (p.kind !== 'run' || p.total === 0) return this.onProgress(p);
      done[0] = p.done;
      last = p;
      this.onProgress({ ...p, done: sum(), elapsed: performance.now() - started });
    };
    workers.forEach((worker, i) => {
      worker.onShard = (shard) => workers.forEach((other, j) => j !== i && other.passShard(shard));
      if (i === 0) return;
      worker.onProgress = (p) => {
        if (p.kind !== 'run' || p.total === 0) return;
        done[i] = p.done;
        if (last) this.onProgress({ ...last, done: sum(), elapsed: performance.now() - started, partial: null });
      };
    });
    let failure = null;
    let stopped = false;
    // Once, and never to a crashed worker (which a call would restart).
    const stopAll = () => {
      if (stopped) return;
      stopped = true;
      for (const worker of workers) if (!worker.crashed) worker.send('cancel').catch(() => {});
    };
    const outcomes = workers.map((worker, i) =>
      worker.call('run', { ...args, pool: { index: i, count, run } }).catch((error) => {
        // The first failure that is not a Cancel is the run's; the others stop.
        if (!failure && error.message !== CANCELLED) failure = error;
        stopAll();
        throw error;
      }),
    );
    try {
      const settled = await Promise.allSettled(outcomes);
      // Helpers whose WebAssembly crashed leave the pool; the next run is shared without them.
      this.remove(workers.filter((w, i) => i > 0 && (w.crashed || settled[i].reason?.internal)));
      // The lead's results are whole once it has them, whatever a helper did after.
      if (settled[0].status === 'fulfilled') return settled[0].value;
      throw failure ?? settled[0].reason;
    } finally {
      this.listen();
      for (const worker of workers) {
        worker.onShard = () => {};
        if (worker !== this.lead) worker.onProgress = () => {};
      }
    }
  }
}
