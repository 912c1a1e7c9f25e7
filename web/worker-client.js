// The page's side of the worker protocol: each call is a promise; progress messages go to a
// listener. When the worker's wasm has crashed (it answers `crashed`, or the worker itself
// fails), the next call first replaces the worker with a fresh one and lets the page restore
// what it had (`onRestart`: the backend, the model, the results on show).

export class WorkerClient {
  constructor(url) {
    this.url = url;
    this.pending = new Map();
    this.nextId = 1;
    this.crashed = false;
    this.restarting = null;
    this.onProgress = () => {};
    this.onStarted = () => {};
    /** Called with this worker's shard of a shared run (web/worker-pool.js passes it on). */
    this.onShard = () => {};
    /** Called with a `send(cmd, args)` on the fresh worker, before any other call reaches it. */
    this.onRestart = async () => {};
    this.start();
  }

  start() {
    this.worker = new Worker(this.url, { type: 'module' });
    this.worker.onmessage = ({ data }) => {
      if (data.progress) {
        this.onProgress(data.progress);
        return;
      }
      if (data.shard) {
        this.onShard(data.shard);
        return;
      }
      if (data.started !== undefined) {
        this.onStarted(data.started);
        return;
      }
      const call = this.pending.get(data.id);
      if (!call) return;
      this.pending.delete(data.id);
      if (data.crashed) this.crashed = true;
      if (data.ok) call.resolve(data.result);
      else call.reject(Object.assign(new Error(data.error), { field: data.field, internal: Boolean(data.crashed) }));
    };
    this.worker.onerror = (event) => {
      event.preventDefault?.();
      this.crashed = true;
      const error = Object.assign(new Error(`Internal error: the model worker failed (${event.message || 'it could not start'}). It is restarted on your next action.`), {
        internal: true,
      });
      for (const call of this.pending.values()) call.reject(error);
      this.pending.clear();
    };
  }

  /** A fresh worker in place of the crashed one, restored by `onRestart`. */
  restart() {
    this.restarting ??= (async () => {
      this.worker.terminate();
      const gone = new Error('The model worker was restarted.');
      for (const call of this.pending.values()) call.reject(gone);
      this.pending.clear();
      this.crashed = false;
      this.start();
      await this.onRestart((cmd, args) => this.send(cmd, args));
    })().finally(() => {
      this.restarting = null;
    });
    return this.restarting;
  }

  async call(cmd, args) {
    if (this.crashed) await this.restart();
    else if (this.restarting) await this.restarting;
    return this.send(cmd, args);
  }

  /** Another worker's shard of the shared run, for this one. */
  passShard(shard) {
    this.worker.postMessage({ peer: shard });
  }

  /** Ends the worker; calls in flight are rejected. */
  terminate() {
    this.worker.terminate();
    const gone = new Error('The worker was ended.');
    for (const call of this.pending.values()) call.reject(gone);
    this.pending.clear();
  }

  send(cmd, args) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, cmd, args });
    });
  }
}
