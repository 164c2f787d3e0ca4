/**
 * The write buffer in front of a prediction log store: rows wait in memory (bounded) and are written
 * in batches, one batch at a time; a failed batch stays buffered and is retried with backoff, so a
 * store that restarts loses nothing as long as the buffer holds. Rows that do not fit are dropped
 * and counted, never blocking or failing the request that produced them.
 */
import type { Prediction } from './types';

export interface WriteBufferOptions {
  maxBuffered: number;
  batchRows: number;
  flushEveryMs: number;
  onError: (err: unknown, what: string) => void;
}

const MAX_BACKOFF_MS = 5_000;

export class WriteBuffer {
  private rows: Prediction[] = [];
  private inFlight = 0;
  private chain: Promise<void> = Promise.resolve();
  private failures = 0;
  private retryAtMs = 0;
  private readonly timer: NodeJS.Timeout;
  dropped = 0;
  written = 0;

  constructor(
    private readonly write: (rows: Prediction[]) => Promise<void>,
    private readonly opts: WriteBufferOptions,
  ) {
    this.timer = setInterval(() => this.tick(), opts.flushEveryMs);
    this.timer.unref();
  }

  /** Rows waiting or being written. */
  get buffered(): number {
    return this.rows.length + this.inFlight;
  }

  push(rows: readonly Prediction[]): void {
    const room = Math.max(0, this.opts.maxBuffered - this.buffered);
    if (rows.length > room) this.dropped += rows.length - room;
    for (let i = 0; i < Math.min(room, rows.length); i++) this.rows.push(rows[i]!);
  }

  /** Writes everything buffered now; rejects with the store's error (the rows stay buffered). */
  async flush(): Promise<void> {
    const rounds = Math.ceil(this.buffered / this.opts.batchRows) + 2;
    for (let i = 0; i < rounds && this.buffered > 0; i++) await this.next();
  }

  stop(): void {
    clearInterval(this.timer);
  }

  private tick(): void {
    if (this.inFlight > 0 || this.rows.length === 0 || Date.now() < this.retryAtMs) return;
    this.next().catch(() => undefined); // reported through onError, retried on a later tick
  }

  /** Queues the write of the next batch behind any write in progress. */
  private next(): Promise<void> {
    const done = this.chain.then(() => this.writeBatch());
    this.chain = done.catch(() => undefined);
    return done;
  }

  private async writeBatch(): Promise<void> {
    if (this.rows.length === 0) return;
    const batch = this.rows.splice(0, this.opts.batchRows);
    this.inFlight = batch.length;
    try {
      await this.write(batch);
      this.written += batch.length;
      this.failures = 0;
    } catch (err) {
      // Back in front, in order: the buffer bound already counted them, so nothing overflows.
      this.rows.unshift(...batch);
      this.failures++;
      this.retryAtMs = Date.now() + Math.min(MAX_BACKOFF_MS, 100 * 2 ** Math.min(this.failures, 10));
      this.opts.onError(err, `writing ${batch.length} predictions (attempt ${this.failures})`);
      throw err;
    } finally {
      this.inFlight = 0;
    }
  }
}
