/**
 * The shadow mirror: mirrored requests wait in a queue bounded by count and by bytes, and run a few
 * at a time over their own connection pool, after the primary answer is sent. A full queue drops
 * the request and counts it; the primary path never waits on the mirror.
 */
import { Upstream } from './upstream';

export interface MirrorJob {
  model: string;
  version: string;
  /** Size of the mirrored body, bytes. */
  bytes: number;
  /** Makes the mirrored call over the mirror's pool and records it. */
  run: (upstream: Upstream) => Promise<void>;
}

export interface MirrorOptions {
  /** Waiting requests at most. */
  maxQueue: number;
  /** Bytes of waiting request bodies at most. */
  maxBytes: number;
  /** Requests in flight at once (also the pool's connections per server). */
  concurrency: number;
  timeoutMs: number;
}

export class Mirror {
  private readonly queue: MirrorJob[] = [];
  private queuedBytes = 0;
  private inFlight = 0;
  private readonly upstream: Upstream;

  constructor(
    private readonly opts: MirrorOptions,
    private readonly hooks: { onDrop: (job: MirrorJob) => void; onError: (err: unknown) => void },
  ) {
    this.upstream = new Upstream({ timeoutMs: opts.timeoutMs, maxSockets: opts.concurrency });
  }

  get depth(): number {
    return this.queue.length;
  }

  get bytes(): number {
    return this.queuedBytes;
  }

  get busy(): boolean {
    return this.inFlight > 0 || this.queue.length > 0;
  }

  /** Queues a mirrored request, or drops it (counted) when the queue is full by count or bytes. */
  push(job: MirrorJob): void {
    if (this.queue.length >= this.opts.maxQueue || this.queuedBytes + job.bytes > this.opts.maxBytes) {
      this.hooks.onDrop(job);
      return;
    }
    this.queue.push(job);
    this.queuedBytes += job.bytes;
    this.pump();
  }

  /** Forgets what is still waiting (at close). */
  clear(): void {
    this.queue.length = 0;
    this.queuedBytes = 0;
  }

  destroy(): void {
    this.clear();
    this.upstream.destroy();
  }

  private pump(): void {
    while (this.inFlight < this.opts.concurrency && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.queuedBytes -= job.bytes;
      this.inFlight++;
      void job
        .run(this.upstream)
        .catch((err: unknown) => this.hooks.onError(err))
        .finally(() => {
          this.inFlight--;
          this.pump();
        });
    }
  }
}
