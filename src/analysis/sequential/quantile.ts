/**
 * Always-valid confidence bounds for a quantile (latency p99) from a histogram, and the latency
 * guardrail's two comparisons built on them. Pure.
 *
 * Method (Howard & Ramdas, "Sequential estimation of quantiles with applications to A/B-testing
 * and best-arm identification", Bernoulli 2022): the q-quantile is above x exactly when more than a
 * share 1 - q of requests are slower than x. For each histogram edge x, the count of requests
 * slower than x is binomial, and the rate-limit test (bernoulli.ts) against 1 - q says, valid over
 * every look, whether that share is significantly above (the quantile is above x) or below (the
 * quantile is at most x). The counts fall as x grows, so the rejections are nested and only the
 * edge next to the true quantile can err: the bounds hold with probability 1 - α at every look.
 * The bounds are histogram edges, so resolution is the bucket width (5% with LATENCY_EDGES_MS).
 */
import { checkAlpha, rateEvidence, type SequentialVerdict } from './bernoulli';

/** counts[k]: requests with latency in (edges[k-1], edges[k]] (edges[-1] = 0); `overflow`: above the last edge. */
export interface LatencyHistogram {
  edges: readonly number[];
  counts: readonly number[];
  overflow: number;
}

/** Bucket edges in ms, 5% apart from 0.1 ms to about 2 minutes. */
export const LATENCY_EDGES_MS: readonly number[] = (() => {
  const edges: number[] = [];
  for (let x = 0.1; x < 130_000; x *= 1.05) edges.push(Number(x.toPrecision(4)));
  return edges;
})();

export interface QuantileBounds {
  /** The quantile is above this (0 when nothing better is known). */
  lower: number;
  /** The quantile is at most this; null when it may be above the last edge. */
  upper: number | null;
  n: number;
}

function checkHistogram(h: LatencyHistogram): number {
  if (h.edges.length !== h.counts.length) throw new Error('histogram: one count per edge');
  let n = h.overflow;
  for (const [k, c] of h.counts.entries()) {
    if (!(Number.isInteger(c) && c >= 0))
      throw new Error(`histogram: count ${k} must be a whole number >= 0`);
    if (k > 0 && !(h.edges[k]! > h.edges[k - 1]!)) throw new Error('histogram: edges must increase');
    n += c;
  }
  if (!(Number.isInteger(h.overflow) && h.overflow >= 0))
    throw new Error('histogram: overflow must be a whole number >= 0');
  return n;
}

/** One-sided bounds at `alpha` each for the q-quantile (0 < q < 1). */
export function quantileBounds(h: LatencyHistogram, q: number, alpha: number): QuantileBounds {
  if (!(q > 0 && q < 1)) throw new Error(`quantile must be in (0, 1), got ${q}`);
  checkAlpha(alpha);
  const n = checkHistogram(h);
  const threshold = Math.log(1 / alpha);
  // slower[k]: requests slower than edges[k].
  const slower = new Array<number>(h.edges.length);
  let rest = n;
  for (const [k, c] of h.counts.entries()) slower[k] = rest -= c;
  // The evidence that the quantile is above an edge falls as the edge grows, the evidence that it
  // is at most the edge rises: each bound is the edge where its test switches, found by bisection.
  const firstEdge = (rejects: (k: number) => boolean, risingWithEdge: boolean): number => {
    let lo = 0;
    let hi = h.edges.length; // the answer in [lo, hi]; hi: none
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (rejects(mid) === risingWithEdge) hi = mid;
      else lo = mid + 1;
    }
    return lo;
  };
  const above = (k: number) => rateEvidence(slower[k]!, n, 1 - q).above >= threshold;
  const below = (k: number) => rateEvidence(slower[k]!, n, 1 - q).below >= threshold;
  const firstNotAbove = firstEdge(above, false);
  const firstBelow = firstEdge(below, true);
  const lower = firstNotAbove > 0 ? h.edges[firstNotAbove - 1]! : 0;
  const upper = firstBelow < h.edges.length ? h.edges[firstBelow]! : null;
  return { lower, upper, n };
}

export interface QuantileTest {
  verdict: SequentialVerdict;
  candidate: QuantileBounds;
  champion?: QuantileBounds;
  /** The value the candidate's quantile is compared with (the limit, or (1 + tolerance) times the champion's). */
  method: string;
}

/** Candidate's q-quantile against an absolute limit: Fail when surely above, Pass when surely at most. */
export function testQuantileLimit(
  h: LatencyHistogram,
  q: number,
  limit: number,
  alpha: number,
): QuantileTest {
  const candidate = quantileBounds(h, q, alpha);
  const verdict: SequentialVerdict =
    candidate.lower >= limit
      ? 'Fail'
      : candidate.upper !== null && candidate.upper <= limit
        ? 'Pass'
        : 'Inconclusive';
  return { verdict, candidate, method: `confidence sequence for p${q * 100} vs limit ${limit}` };
}

/**
 * Candidate's q-quantile against (1 + tolerance) times the champion's. Bounds at α/2 for each
 * version: Fail when the candidate's lower bound reaches (1 + tolerance) times the champion's
 * upper bound, Pass when the candidate's upper bound is within (1 + tolerance) times the
 * champion's lower bound.
 */
export function testQuantileRatio(
  candidateHistogram: LatencyHistogram,
  championHistogram: LatencyHistogram,
  q: number,
  tolerance: number,
  alpha: number,
): QuantileTest {
  if (!(tolerance >= 0 && Number.isFinite(tolerance)))
    throw new Error(`tolerance must be >= 0, got ${tolerance}`);
  const candidate = quantileBounds(candidateHistogram, q, alpha / 2);
  const champion = quantileBounds(championHistogram, q, alpha / 2);
  const f = 1 + tolerance;
  const verdict: SequentialVerdict =
    champion.upper !== null && candidate.lower >= f * champion.upper
      ? 'Fail'
      : candidate.upper !== null && candidate.upper <= f * champion.lower
        ? 'Pass'
        : 'Inconclusive';
  return {
    verdict,
    candidate,
    champion,
    method: `confidence sequences for p${q * 100}, tolerance ${tolerance}`,
  };
}

/** Counts `latencies` (ms) into a histogram over `edges`. */
export function histogramOf(
  latencies: Iterable<number>,
  edges: readonly number[] = LATENCY_EDGES_MS,
): LatencyHistogram {
  const counts = new Array<number>(edges.length).fill(0);
  let overflow = 0;
  for (const x of latencies) {
    // First edge >= x (binary search).
    let lo = 0;
    let hi = edges.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (edges[mid]! >= x) hi = mid;
      else lo = mid + 1;
    }
    if (lo === edges.length) overflow += 1;
    else counts[lo]! += 1;
  }
  return { edges, counts, overflow };
}
