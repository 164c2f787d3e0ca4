/** Shadow comparison: what the candidate predicts against what the champion predicts. Pure. */
import type { Shadow } from '../plan/schema';
import { psi } from './stats';
import { fmt, type Assessment } from './types';

/** A request answered by both versions: the champion's (served) score and the candidate's (shadow). */
export interface ScorePair {
  champion: number;
  candidate: number;
}

export interface ShadowComparison {
  pairs: number;
  /** Fraction of pairs whose decision at the policy thresholds differs. */
  disagreement: number | null;
  /** Population stability index of candidate scores against champion scores. */
  scorePsi: number | null;
  /** Decision thresholds (ascending): a score's decision is how many thresholds it reaches. */
  thresholds: number[];
}

/** The decision class of a score: the number of thresholds it is at or above. */
export function decisionClass(score: number, thresholds: readonly number[]): number {
  return thresholds.filter((t) => score >= t).length;
}

/** Compares paired scores: disagreement of their decisions at the thresholds, and the score PSI. */
export function compareScores(pairs: readonly ScorePair[], thresholds: readonly number[]): ShadowComparison {
  const sorted = [...thresholds].sort((a, b) => a - b);
  if (pairs.length === 0) return { pairs: 0, disagreement: null, scorePsi: null, thresholds: sorted };
  const differ = pairs.filter(
    (p) => decisionClass(p.champion, sorted) !== decisionClass(p.candidate, sorted),
  ).length;
  return {
    pairs: pairs.length,
    disagreement: differ / pairs.length,
    scorePsi: psi(
      pairs.map((p) => p.champion),
      pairs.map((p) => p.candidate),
    ),
    thresholds: sorted,
  };
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
  const facts = `disagreement ${fmt(comparison.disagreement)} at thresholds ${comparison.thresholds.map(fmt).join('/')}, score PSI ${fmt(comparison.scorePsi)}, ${comparison.pairs} pairs`;
  if (rule.maxDisagreement !== undefined && (comparison.disagreement ?? 0) > rule.maxDisagreement) {
    return {
      ...base,
      verdict: 'Fail',
      evidence: `${facts}: disagreement above max ${fmt(rule.maxDisagreement)}`,
    };
  }
  if (rule.maxScorePsi !== undefined && (comparison.scorePsi ?? 0) > rule.maxScorePsi) {
    return { ...base, verdict: 'Fail', evidence: `${facts}: PSI above max ${fmt(rule.maxScorePsi)}` };
  }
  return { ...base, verdict: 'Pass', evidence: facts };
}
