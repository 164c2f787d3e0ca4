/**
 * Calls into a worker thread as request/answer pairs, so a slow SQLite statement runs off the
 * event loop that serves inference. A worker that dies fails its pending calls and is started
 * again on the next call.
 */
import { extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { InvalidInputError } from '../../../common/errors';
import { PredictionLogUnavailable } from './types';

export interface WorkerRequest {
  id: number;
  op: string;
  args: unknown[];
}

export type WorkerAnswer =
  | { id: number; ok: true; result: unknown }
  | { id: number; ok: false; error: { type: string; message: string } };

/** Starts a worker script that sits beside this file, from source (.ts, tests and benches) or built. */
function startWorker(name: string, workerData: unknown): Worker {
  const ext = extname(__filename);
  const file = join(__dirname, `${name}${ext}`);
  if (ext === '.ts') {
    // Running from source: the worker compiles its TypeScript with the same loader the tests use.
    const loader = require.resolve('tsx/cjs');
    return new Worker(`require(${JSON.stringify(loader)}); require(${JSON.stringify(file)});`, {
      eval: true,
      workerData,
    });
  }
  return new Worker(file, { workerData });
}

export class WorkerClient {
  private worker: Worker | null = null;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  private closed = false;

  constructor(
    private readonly script: string,
    private readonly workerData: unknown,
    private readonly what: string,
  ) {}

  call<T>(op: string, ...args: unknown[]): Promise<T> {
    if (this.closed) return Promise.reject(new PredictionLogUnavailable(`${this.what} is closed`));
    const worker = this.ensure();
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      if (this.pending.size === 1) worker.ref();
      worker.postMessage({ id, op, args } satisfies WorkerRequest);
    });
  }

  async close(): Promise<void> {
    if (this.closed) return;
    try {
      if (this.worker) await this.call('close');
    } finally {
      this.closed = true;
      await this.worker?.terminate();
      this.worker = null;
    }
  }

  private ensure(): Worker {
    if (this.worker) return this.worker;
    const worker = startWorker(this.script, this.workerData);
    worker.unref(); // referenced only while a call is pending, so an idle log never holds the process
    worker.on('message', (answer: WorkerAnswer) => this.settle(answer));
    worker.on('error', (err) => this.fail(worker, err));
    worker.on('exit', (code) => this.fail(worker, new Error(`exited with code ${code}`)));
    this.worker = worker;
    return worker;
  }

  private settle(answer: WorkerAnswer): void {
    const call = this.pending.get(answer.id);
    if (!call) return;
    this.pending.delete(answer.id);
    if (this.pending.size === 0) this.worker?.unref();
    if (answer.ok) call.resolve(answer.result);
    else if (answer.error.type === 'InvalidInput') call.reject(new InvalidInputError(answer.error.message));
    else call.reject(new PredictionLogUnavailable(`${this.what}: ${answer.error.message}`));
  }

  private fail(worker: Worker, err: Error): void {
    if (this.worker !== worker) return;
    this.worker = null;
    for (const call of this.pending.values())
      call.reject(new PredictionLogUnavailable(`${this.what} stopped: ${err.message}`));
    this.pending.clear();
  }
}
