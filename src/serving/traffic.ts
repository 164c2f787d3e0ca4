/**
 * The traffic generator: replays holdout rows through the gateway at a fixed rate, one row per
 * request with its entity key, and delivers each request's true label after a delay (as delayed
 * ground truth would arrive), in batches through the label endpoint. Labels name each request by
 * the id the gateway gave it (its `x-request-id` answer header).
 */
import type { Logger } from '../common/logger';
import type { Holdout } from '../providers/local/datasets';

const LABEL_BATCH = 5000;
/** Labels waiting at most (a long delay at a high rate); beyond it the oldest are given up. */
const MAX_PENDING_LABELS = 200_000;

export interface TrafficOptions {
  gatewayUrl: string;
  model: string;
  holdout: Holdout;
  /** Requests per second. */
  ratePerSec: number;
  /** Delay before a request's label is sent, ms; null sends no labels. Default 0. */
  labelDelayMs?: number | null;
  /** Bearer token of the labels endpoint (the gateway's ingest token); needed unless labelDelayMs is null. */
  ingestToken?: string;
  logger: Logger;
}

export class TrafficGenerator {
  private timer: NodeJS.Timeout | null = null;
  private next = 0;
  private carry = 0;
  private readonly pendingLabels: { dueMs: number; requestId: string; label: number }[] = [];
  readonly counts = { sent: 0, ok: 0, failed: 0, labelled: 0, labelsRefused: 0 };
  private readonly features: string[];

  constructor(private readonly opts: TrafficOptions) {
    this.features = opts.holdout.columns.filter((c) => c !== 'entity_id' && c !== 'label');
  }

  start(tickMs = 100): this {
    this.timer = setInterval(() => this.tick(tickMs), tickMs);
    this.timer.unref();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  private tick(tickMs: number): void {
    this.carry += (this.opts.ratePerSec * tickMs) / 1000;
    const due = Math.floor(this.carry);
    this.carry -= due;
    for (let i = 0; i < due; i++) void this.send();
    void this.flushLabels();
  }

  private async send(): Promise<void> {
    const rows = this.opts.holdout.rows;
    const row = rows[this.next++ % rows.length]!;
    this.counts.sent++;
    try {
      const response = await fetch(
        `${this.opts.gatewayUrl}/models/${encodeURIComponent(this.opts.model)}/invocations`,
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-entity-id': row.entity_id ?? `row-${this.next}`,
          },
          body: JSON.stringify({
            dataframe_split: { columns: this.features, data: [this.features.map((f) => Number(row[f]))] },
          }),
          signal: AbortSignal.timeout(10_000),
        },
      );
      await response.arrayBuffer();
      if (response.ok) this.counts.ok++;
      else this.counts.failed++;
      const requestId = response.headers.get('x-request-id');
      if (this.opts.labelDelayMs !== null && row.label !== undefined && requestId) {
        if (this.pendingLabels.length >= MAX_PENDING_LABELS) this.pendingLabels.shift();
        this.pendingLabels.push({
          dueMs: Date.now() + (this.opts.labelDelayMs ?? 0),
          requestId,
          label: Number(row.label),
        });
      }
    } catch {
      this.counts.failed++;
    }
  }

  private async flushLabels(): Promise<void> {
    const now = Date.now();
    const due = this.pendingLabels.filter((l) => l.dueMs <= now);
    if (due.length === 0) return;
    this.pendingLabels.splice(
      0,
      this.pendingLabels.length,
      ...this.pendingLabels.filter((l) => l.dueMs > now),
    );
    // The gateway takes at most 10000 labels per batch.
    for (let i = 0; i < due.length; i += LABEL_BATCH) await this.deliver(due.slice(i, i + LABEL_BATCH));
  }

  private async deliver(batch: { requestId: string; label: number }[]): Promise<void> {
    const response = await fetch(
      `${this.opts.gatewayUrl}/models/${encodeURIComponent(this.opts.model)}/labels`,
      {
        method: 'POST',
        headers: {
          'content-type': 'application/json',
          ...(this.opts.ingestToken ? { authorization: `Bearer ${this.opts.ingestToken}` } : {}),
        },
        signal: AbortSignal.timeout(10_000),
        body: JSON.stringify({ labels: batch.map((l) => ({ requestId: l.requestId, label: l.label })) }),
      },
    ).catch((err: unknown) => {
      this.opts.logger.warn({ err }, 'label delivery failed');
      return null;
    });
    if (response?.ok) this.counts.labelled += ((await response.json()) as { labelled: number }).labelled;
    else if (response) {
      this.counts.labelsRefused += batch.length;
      this.opts.logger.warn(
        { status: response.status, answer: (await response.text()).slice(0, 300) },
        'label delivery refused',
      );
    }
  }
}
