/**
 * The traffic generator: replays holdout rows through the gateway at a fixed rate, one row per
 * request with its entity key, and delivers each request's true label after a delay (as delayed
 * ground truth would arrive), in batches through the label endpoint.
 */
import { randomUUID } from 'node:crypto';
import type { Logger } from '../common/logger';
import type { Holdout } from '../providers/local/datasets';

export interface TrafficOptions {
  gatewayUrl: string;
  model: string;
  holdout: Holdout;
  /** Requests per second. */
  ratePerSec: number;
  /** Delay before a request's label is sent, ms; null sends no labels. Default 0. */
  labelDelayMs?: number | null;
  logger: Logger;
}

export class TrafficGenerator {
  private timer: NodeJS.Timeout | null = null;
  private next = 0;
  private carry = 0;
  private readonly pendingLabels: { dueMs: number; requestId: string; label: number }[] = [];
  readonly counts = { sent: 0, ok: 0, failed: 0, labelled: 0 };
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
    const requestId = randomUUID();
    this.counts.sent++;
    try {
      const response = await fetch(
        `${this.opts.gatewayUrl}/models/${encodeURIComponent(this.opts.model)}/invocations`,
        {
          method: 'POST',
          headers: {
            'content-type': 'application/json',
            'x-entity-id': row.entity_id ?? requestId,
            'x-request-id': requestId,
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
      if (this.opts.labelDelayMs !== null && row.label !== undefined) {
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
    const response = await fetch(
      `${this.opts.gatewayUrl}/models/${encodeURIComponent(this.opts.model)}/labels`,
      {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body: JSON.stringify({ labels: due.map((l) => ({ requestId: l.requestId, label: l.label })) }),
      },
    ).catch((err: unknown) => {
      this.opts.logger.warn({ err }, 'label delivery failed');
      return null;
    });
    if (response?.ok) this.counts.labelled += ((await response.json()) as { labelled: number }).labelled;
  }
}
