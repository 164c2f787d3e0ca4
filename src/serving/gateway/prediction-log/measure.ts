/** Live metrics from a window's counts: what the guardrails measure, with the raw counts beside. */
import type { Measurement } from '../../../analysis/types';
import type { WindowCounts } from './types';

/** A measurement with the counts it came from (sequential tests work on the counts). */
export type WindowMeasurement = Measurement & WindowCounts;

/**
 * The q-quantile (0..1) of a latency histogram: linear within the bucket that holds it, like
 * Prometheus' histogram_quantile; the open last bucket answers the window's largest latency.
 */
export function histogramQuantile(latency: WindowCounts['latency'], q: number): number | null {
  const total = latency.counts.reduce((a, b) => a + b, 0);
  if (total === 0) return null;
  const rank = q * total;
  let seen = 0;
  for (let i = 0; i < latency.counts.length; i++) {
    const n = latency.counts[i]!;
    if (n > 0 && seen + n >= rank) {
      const upper = latency.boundsMs[i];
      if (upper === undefined) return latency.maxMs ?? latency.boundsMs[latency.boundsMs.length - 1]!;
      const lower = i === 0 ? 0 : latency.boundsMs[i - 1]!;
      // Never above the largest latency actually seen.
      const value = lower + ((upper - lower) * Math.max(0, rank - seen)) / n;
      return latency.maxMs === null ? value : Math.min(value, latency.maxMs);
    }
    seen += n;
  }
  return latency.maxMs;
}

/** error_rate or latency_p<NN>_ms of a window; any other metric is phase Error. */
export function measureCounts(
  counts: WindowCounts,
  metric: string,
  version: string,
  fromMs: number,
  toMs: number,
): WindowMeasurement {
  const base = { metric, version, samples: counts.requests, phase: 'Ok' as const, fromMs, toMs, ...counts };
  if (metric === 'error_rate')
    return {
      ...base,
      value: counts.requests === 0 ? null : counts.errors / counts.requests,
      events: counts.errors,
    };
  const match = /^latency_p(\d{1,2}(?:\.\d+)?)_ms$/.exec(metric);
  if (!match)
    return {
      ...base,
      value: null,
      samples: 0,
      phase: 'Error',
      error: `the gateway does not measure ${metric}`,
    };
  return { ...base, value: histogramQuantile(counts.latency, Number(match[1]) / 100) };
}
