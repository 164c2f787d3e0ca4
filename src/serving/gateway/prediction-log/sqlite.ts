/**
 * The SQLite prediction log (the default). Every statement runs in a worker thread: a writer thread
 * (batched inserts, one transaction per batch; labels; pruning) and a reader thread (aggregates and
 * limited row reads) on the same WAL database, so neither a week-long read nor a prune ever blocks
 * the event loop that serves inference, and reads do not wait behind writes.
 */
import { WriteBuffer } from './buffer';
import { Retention } from './retention';
import {
  checkLabels,
  readLimit,
  type LabelledRow,
  type Prediction,
  type PredictionLog,
  type PredictionLogOptions,
  type PredictionLogStats,
  type ScorePairRow,
  type SliceFilter,
  type SliceValue,
  type WindowCounts,
} from './types';
import { WorkerClient } from './worker-client';

/** A Buffer over transferred bytes (no copy). */
const bytes = (u: Uint8Array) => Buffer.from(u.buffer, u.byteOffset, u.byteLength);

export class SqlitePredictionLog implements PredictionLog {
  private readonly writer: WorkerClient;
  private readonly reader: WorkerClient;
  private readonly ready: Promise<unknown>;
  private readonly buffer: WriteBuffer;
  private readonly retention: Retention;

  constructor(file: string, opts: PredictionLogOptions = {}) {
    const onError = opts.onError ?? (() => undefined);
    this.writer = new WorkerClient('sqlite-worker', { file, role: 'writer' }, `the prediction log ${file}`);
    this.reader = new WorkerClient('sqlite-worker', { file, role: 'reader' }, `the prediction log ${file}`);
    // The writer creates the schema; nothing reads before it has.
    this.ready = this.writer.call('ping');
    this.ready.catch((err: unknown) => onError(err, 'opening the prediction log'));
    this.buffer = new WriteBuffer((rows) => this.writer.call('insert', rows), {
      maxBuffered: opts.maxBuffered ?? 50_000,
      batchRows: 2000,
      flushEveryMs: opts.flushEveryMs ?? 50,
      onError,
    });
    this.retention = new Retention((before, batch) => this.writer.call<number>('prune', before, batch), opts);
  }

  record(rows: Prediction[]): void {
    this.buffer.push(rows);
  }

  /** Resolves once the store is open and every row recorded so far is written. */
  async flush(): Promise<void> {
    await this.ready;
    await this.buffer.flush();
  }

  async ingestLabels(model: string, labels: unknown): Promise<{ labelled: number }> {
    const batch = checkLabels(labels);
    await this.flush(); // labels may name predictions still in the buffer
    return this.writer.call('labels', model, batch, Date.now());
  }

  async counts(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    role: 'primary' | 'shadow' = 'primary',
    slice?: SliceFilter,
  ): Promise<WindowCounts> {
    await this.beforeRead();
    return this.reader.call('counts', model, version, fromMs, toMs, role, slice ?? null);
  }

  async sliceValues(
    model: string,
    key: string,
    fromMs: number,
    toMs: number,
    limit: number,
  ): Promise<SliceValue[]> {
    await this.beforeRead();
    return this.reader.call('sliceValues', model, key, fromMs, toMs, limit);
  }

  async window(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    role: 'primary' | 'shadow' = 'primary',
    limit?: number,
  ): Promise<Prediction[]> {
    await this.beforeRead();
    return this.reader.call('window', model, version, fromMs, toMs, role, readLimit(limit));
  }

  async pairs(
    model: string,
    champion: string,
    candidate: string,
    fromMs: number,
    toMs: number,
    limit?: number,
  ): Promise<ScorePairRow[]> {
    await this.beforeRead();
    return this.reader.call('pairs', model, champion, candidate, fromMs, toMs, readLimit(limit));
  }

  async labelled(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    limit?: number,
    slice?: SliceFilter,
  ): Promise<LabelledRow[]> {
    await this.beforeRead();
    return this.reader.call('labelled', model, version, fromMs, toMs, readLimit(limit), slice ?? null);
  }

  async pairsJson(
    model: string,
    champion: string,
    candidate: string,
    fromMs: number,
    toMs: number,
    limit?: number,
  ): Promise<Buffer> {
    await this.beforeRead();
    const args = [model, champion, candidate, fromMs, toMs, readLimit(limit)];
    return bytes(await this.reader.call<Uint8Array>('pairsJson', ...args));
  }

  async labelledJson(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    limit?: number,
    slice?: SliceFilter,
  ): Promise<Buffer> {
    await this.beforeRead();
    const args = [model, version, fromMs, toMs, readLimit(limit), slice ?? null];
    return bytes(await this.reader.call<Uint8Array>('labelledJson', ...args));
  }

  prune(nowMs?: number): Promise<number> {
    return this.retention.run(nowMs);
  }

  stats(): PredictionLogStats {
    return {
      buffered: this.buffer.buffered,
      dropped: this.buffer.dropped,
      written: this.buffer.written,
      pruned: this.retention.pruned,
    };
  }

  async close(): Promise<void> {
    this.retention.stop();
    this.buffer.stop();
    try {
      await this.buffer.flush();
    } finally {
      await this.reader.close();
      await this.writer.close();
    }
  }

  /** Reads see every row recorded before they started. */
  private beforeRead(): Promise<void> {
    return this.flush();
  }
}
