/**
 * Measurements for time-skipping tests, where workflow time jumps ahead of the machine clock and no
 * real requests can fill a window. Each window is modelled from the route's weights and each
 * version's current behaviour: requests = rate x share x window length, errors and latencies drawn
 * from seeded generators, labelled scores drawn per version and scored with the real AUC. It yields
 * measurements only; verdicts still come from the assessments.
 */
import type { ScorePair } from '../../src/analysis/shadow';
import { labelMeasurement } from '../../src/analysis/labels';
import { quantile } from '../../src/analysis/stats';
import type { Measurement } from '../../src/analysis/types';
import type { InProcessPlane } from '../../src/providers/inprocess/plane';
import { gaussian, seededRandom } from '../../src/providers/inprocess/random';
import type { MetricsSource, WindowQuery } from '../../src/providers/types';

export class ModelledMetrics implements MetricsSource {
  constructor(
    private readonly plane: InProcessPlane,
    private readonly ratePerSec: number,
  ) {}

  private requests(q: WindowQuery): number {
    const share = (this.plane.routeNow(q.model)?.weights[q.version] ?? 0) / 100;
    return Math.floor(((q.toMs - q.fromMs) / 1000) * this.ratePerSec * share);
  }

  measure(q: WindowQuery & { metric: string }): Promise<Measurement> {
    const n = this.requests(q);
    const base = {
      metric: q.metric,
      version: q.version,
      samples: n,
      phase: 'Ok' as const,
      fromMs: q.fromMs,
      toMs: q.toMs,
    };
    if (n === 0) return Promise.resolve({ ...base, value: null });
    const b = this.plane.versionRecord(q.model, q.version).behaviour;
    const rand = seededRandom(`${q.model}/${q.version}/${q.fromMs}/${q.toMs}`);
    if (q.metric === 'error_rate') {
      // Normal approximation of Binomial(n, errorRate).
      const errors = Math.max(
        0,
        Math.round(n * b.errorRate + gaussian(rand) * Math.sqrt(n * b.errorRate * (1 - b.errorRate))),
      );
      return Promise.resolve({ ...base, value: errors / n, events: errors });
    }
    const latencies = Array.from(
      { length: Math.min(n, 2000) },
      () => b.latencyMs + rand() * b.latencyJitterMs,
    );
    const match = /^latency_p(\d+)_ms$/.exec(q.metric);
    return Promise.resolve({ ...base, value: match ? quantile(latencies, Number(match[1]) / 100) : null });
  }

  shadowPairs(): Promise<ScorePair[]> {
    return Promise.resolve([]);
  }

  labelMetric(q: WindowQuery & { metric: string }): Promise<Measurement> {
    const n = Math.min(this.requests(q), 5000);
    const base = {
      metric: q.metric,
      version: q.version,
      samples: n,
      phase: 'Ok' as const,
      fromMs: q.fromMs,
      toMs: q.toMs,
    };
    if (n === 0) return Promise.resolve({ ...base, value: null });
    const b = this.plane.versionRecord(q.model, q.version).behaviour;
    const rand = seededRandom(`labels/${q.model}/${q.version}/${q.toMs}`);
    const scores: number[] = [];
    const labels: number[] = [];
    for (let i = 0; i < n; i++) {
      const latent = gaussian(rand);
      labels.push(rand() < 1 / (1 + Math.exp(-(2 * latent - 1))) ? 1 : 0);
      scores.push(1 / (1 + Math.exp(-(b.signal * latent + b.scoreShift + 0.5 * gaussian(rand)))));
    }
    return Promise.resolve(
      labelMeasurement(
        scores.map((score, i) => ({ score, label: labels[i]! })),
        q,
      ),
    );
  }
}
