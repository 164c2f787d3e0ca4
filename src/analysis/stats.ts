/** Small statistics helpers for the assessments. Pure. */
import cdf from '@stdlib/stats-base-dists-normal-cdf';

/** Standard normal cumulative distribution. */
export function normalCdf(z: number): number {
  return cdf(z, 0, 1);
}

/**
 * Population stability index of `actual` against `expected` over `bins` equal-width bins on [0, 1]
 * (scores are probabilities). Empty bins get a small floor so the index stays finite.
 */
export function psi(expected: readonly number[], actual: readonly number[], bins = 10): number {
  if (expected.length === 0 || actual.length === 0) return NaN;
  const histogram = (xs: readonly number[]) => {
    const counts = new Array<number>(bins).fill(0);
    for (const x of xs) counts[Math.min(bins - 1, Math.max(0, Math.floor(x * bins)))]! += 1;
    return counts.map((c) => Math.max(c / xs.length, 1e-4));
  };
  const e = histogram(expected);
  const a = histogram(actual);
  return e.reduce((sum, ei, i) => sum + (a[i]! - ei) * Math.log(a[i]! / ei), 0);
}

/** The q-quantile (0..1) of `values` by linear interpolation; NaN when empty. */
export function quantile(values: readonly number[], q: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const pos = (sorted.length - 1) * q;
  const lo = Math.floor(pos);
  const hi = Math.ceil(pos);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (pos - lo);
}

/** 1-based ranks of `xs`, ties given the average rank of their group (midranks). */
export function midranks(xs: readonly number[]): Float64Array {
  const order = xs.map((_, i) => i).sort((a, b) => xs[a]! - xs[b]!);
  const ranks = new Float64Array(xs.length);
  for (let i = 0; i < order.length;) {
    let j = i;
    while (j + 1 < order.length && xs[order[j + 1]!] === xs[order[i]!]) j++;
    for (let k = i; k <= j; k++) ranks[order[k]!] = (i + j) / 2 + 1;
    i = j + 1;
  }
  return ranks;
}

/** ROC AUC of `scores` against binary `labels` (Mann-Whitney with tie handling); NaN if one class is absent. */
export function auc(scores: readonly number[], labels: readonly number[]): number {
  const ranks = midranks(scores);
  let rankSum = 0;
  let positives = 0;
  labels.forEach((y, i) => {
    if (y === 1) {
      rankSum += ranks[i]!;
      positives++;
    }
  });
  const negatives = scores.length - positives;
  if (positives === 0 || negatives === 0) return NaN;
  return (rankSum - (positives * (positives + 1)) / 2) / (positives * negatives);
}

/** Mean binary log loss (natural log), probabilities clipped to [1e-15, 1 - 1e-15]. */
export function logLoss(scores: readonly number[], labels: readonly number[]): number {
  if (scores.length === 0) return NaN;
  const eps = 1e-15;
  let sum = 0;
  scores.forEach((s, i) => {
    const p = Math.min(1 - eps, Math.max(eps, s));
    sum += labels[i] === 1 ? -Math.log(p) : -Math.log(1 - p);
  });
  return sum / scores.length;
}

/** Fraction of rows where (score >= threshold) equals the label. */
export function accuracy(scores: readonly number[], labels: readonly number[], threshold = 0.5): number {
  if (scores.length === 0) return NaN;
  return scores.filter((s, i) => (s >= threshold ? 1 : 0) === labels[i]).length / scores.length;
}
