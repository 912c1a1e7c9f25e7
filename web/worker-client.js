// The page's side of the worker protocol: each call is a promise; progress messages go to a
// listener.

export class WorkerClient {
  constructor(url) {
    this.worker = new Worker(url, { type: 'module' });
    this.pending = new Map();
    this.nextId = 1;
    this.onProgress = () => {};
    this.onStarted = () => {};
    this.worker.onmessage = ({ data }) => {
      if (data.progress) {
        this.onProgress(data.progress);
        return;
      }
      if (data.started !== undefined) {
        this.onStarted(data.started);
        return;
      }
      const call = this.pending.get(data.id);
      if (!call) return;
      this.pending.delete(data.id);
      if (data.ok) call.resolve(data.result);
      else call.reject(Object.assign(new Error(data.error), { field: data.field }));
    };
    this.worker.onerror = (event) => {
      const error = new Error(`The model worker failed: ${event.message || 'it could not start'}`);
      for (const call of this.pending.values()) call.reject(error);
      this.pending.clear();
    };
  }

  call(cmd, args) {
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker.postMessage({ id, cmd, args });
    });
  }
}
