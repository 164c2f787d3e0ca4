/** Pruning rows past the retention in small batches, so no statement holds the store for long. */
import { DEFAULT_RETENTION_MS, type PredictionLogOptions } from './types';

/** At most this many batches per pruning run; what is left waits for the next run. */
const MAX_BATCHES = 10_000;

export class Retention {
  readonly retentionMs: number;
  private readonly batch: number;
  private readonly timer: NodeJS.Timeout | null;
  private running: Promise<number> | null = null;
  pruned = 0;

  constructor(
    private readonly deleteBatch: (beforeMs: number, batch: number) => Promise<number>,
    opts: PredictionLogOptions,
  ) {
    this.retentionMs = opts.retentionMs ?? DEFAULT_RETENTION_MS;
    if (!(this.retentionMs > 0)) throw new RangeError('prediction log retention must be a positive duration');
    this.batch = opts.pruneBatch ?? 1000;
    const every = opts.pruneEveryMs ?? 60_000;
    this.timer =
      every > 0
        ? setInterval(() => {
            this.run().catch((err: unknown) => opts.onError?.(err, 'pruning old predictions'));
          }, every)
        : null;
    this.timer?.unref();
  }

  /** Deletes rows older than the retention; one run at a time (a second caller shares the first's). */
  run(nowMs = Date.now()): Promise<number> {
    this.running ??= this.prune(nowMs - this.retentionMs).finally(() => (this.running = null));
    return this.running;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
  }

  private async prune(beforeMs: number): Promise<number> {
    let total = 0;
    for (let i = 0; i < MAX_BATCHES; i++) {
      const deleted = await this.deleteBatch(beforeMs, this.batch);
      total += deleted;
      this.pruned += deleted;
      if (deleted < this.batch) break;
    }
    return total;
  }
}
