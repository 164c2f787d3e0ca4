/**
 * Shadow comparison: what the candidate predicts against what the champion predicts on the same
 * requests, with a confidence statement for each limit. Pure. The comparison is made once, at the
 * end of the shadow period (one look), so fixed-sample intervals are valid here.
 */
import quantileOfNormal from '@stdlib/stats-base-dists-normal-quantile';
import type { Shadow } from '../plan/schema';
import { fmt, type Assessment } from './types';

/** A request answered by both versions: the champion's (served) score and the candidate's (shadow). */
export interface ScorePair {
  champion: number;
  candidate: number;
}

export interface Interval {
  lower: number;
  upper: number;
}

export interface ShadowComparison {
  pairs: number;
  /** Fraction of pairs whose decision at the policy thresholds differs. */
  disagreement: number | null;
  /** Population stability index of candidate scores against champion scores. */
  scorePsi: number | null;
  /** One-sided bounds at the plan's alpha each: Wilson for the disagreement, bootstrap for the PSI. */
  disagreementInterval: Interval | null;
  scorePsiInterval: Interval | null;
  alpha: number;
  /** Decision thresholds (ascending): a score's decision is how many thresholds it reaches. */
  thresholds: number[];
}

/** The decision class of a score: the number of thresholds it is at or above. */
export function decisionClass(score: number, thresholds: readonly number[]): number {
  return thresholds.filter((t) => score >= t).length;
}

/**
 * Wilson score bounds for a binomial proportion (Wilson, JASA 1927), one-sided at `alpha` each.
 * The normal quantile comes from @stdlib.
 */
export function wilsonInterval(successes: number, n: number, alpha: number): Interval {
  if (n === 0) return { lower: 0, upper: 1 };
  const z = quantileOfNormal(1 - alpha, 0, 1);
  const p = successes / n;
  const z2 = z * z;
  const centre = (p + z2 / (2 * n)) / (1 + z2 / n);
  const half = (z / (1 + z2 / n)) * Math.sqrt((p * (1 - p)) / n + z2 / (4 * n * n));
  return { lower: Math.max(0, centre - half), upper: Math.min(1, centre + half) };
}

/** Verdict of the shadow phase against the plan's limits. */
export function assessShadow(rule: Shadow, comparison: ShadowComparison): Assessment {
  const base = { subject: 'shadow', samples: comparison.pairs };
  if (comparison.pairs === 0)
    return { ...base, verdict: 'NoData', evidence: 'no mirrored request pairs to compare' };
  if (comparison.pairs < rule.minPairs) {
    return {
      ...base,
      verdict: 'Inconclusive',
      evidence: `only ${comparison.pairs} of ${rule.minPairs} required pairs`,
    };
  }
  const conf = `${fmt(100 * (1 - comparison.alpha))}% bounds`;
  const range = (i: Interval | null) => (i ? `[${fmt(i.lower)}, ${fmt(i.upper)}]` : 'none');
  const facts = `disagreement ${fmt(comparison.disagreement)} ${range(comparison.disagreementInterval)} at thresholds ${comparison.thresholds.map(fmt).join('/')}, score PSI ${fmt(comparison.scorePsi)} ${range(comparison.scorePsiInterval)} (${conf}), ${comparison.pairs} pairs`;
  const checks: { name: string; max: number | undefined; interval: Interval | null }[] = [
    { name: 'disagreement', max: rule.maxDisagreement, interval: comparison.disagreementInterval },
    { name: 'PSI', max: rule.maxScorePsi, interval: comparison.scorePsiInterval },
  ];
  const test = (name: string, max: number, interval: Interval) => ({
    method: name === 'PSI' ? 'bootstrap interval of the score PSI' : 'Wilson interval of the disagreement',
    alpha: comparison.alpha,
    nCandidate: comparison.pairs,
    nChampion: comparison.pairs,
    statistic: 'bound',
    value: interval.lower,
    threshold: max,
    expectedMoreSamples: null,
  });
  for (const c of checks) {
    if (c.max !== undefined && c.interval && c.interval.lower > c.max)
      return {
        ...base,
        verdict: 'Fail',
        evidence: `${facts}: ${c.name} significantly above max ${fmt(c.max)}`,
        test: test(c.name, c.max, c.interval),
      };
  }
  for (const c of checks) {
    if (c.max !== undefined && (!c.interval || c.interval.upper > c.max))
      return {
        ...base,
        verdict: 'Inconclusive',
        evidence: `${facts}: ${c.name} not shown to be within max ${fmt(c.max)}`,
        test: c.interval ? { ...test(c.name, c.max, c.interval), value: c.interval.upper } : undefined,
      };
  }
  return { ...base, verdict: 'Pass', evidence: facts };
}
