/**
 * The shadow comparison itself, run by the measuring activity (never in a workflow): decision
 * disagreement with its Wilson bounds and the score PSI with bootstrap bounds.
 */
import randu from '@stdlib/random-base-randu';
import {
  decisionClass,
  wilsonInterval,
  type Interval,
  type ScorePair,
  type ShadowComparison,
} from './shadow';
import { psi, quantile } from './stats';

/** Bootstrap resamples of the PSI. */
export const PSI_RESAMPLES = 200;

/**
 * Percentile bootstrap bounds of the PSI (Efron & Tibshirani, An Introduction to the Bootstrap,
 * 1993, ch. 13): pairs are resampled with replacement, with a fixed seed so the same pairs always
 * give the same bounds.
 */
export function psiInterval(pairs: readonly ScorePair[], alpha: number, seed = 1): Interval | null {
  if (pairs.length < 2) return null;
  const rand = randu.factory({ seed });
  const values: number[] = [];
  const champion = new Array<number>(pairs.length);
  const candidate = new Array<number>(pairs.length);
  for (let b = 0; b < PSI_RESAMPLES; b++) {
    for (let i = 0; i < pairs.length; i++) {
      const p = pairs[Math.floor(rand() * pairs.length)]!;
      champion[i] = p.champion;
      candidate[i] = p.candidate;
    }
    values.push(psi(champion, candidate));
  }
  return { lower: quantile(values, alpha), upper: quantile(values, 1 - alpha) };
}

/** Compares paired scores: disagreement of their decisions at the thresholds, and the score PSI. */
export function compareScores(
  pairs: readonly ScorePair[],
  thresholds: readonly number[],
  alpha = 0.05,
): ShadowComparison {
  const sorted = [...thresholds].sort((a, b) => a - b);
  if (pairs.length === 0)
    return {
      pairs: 0,
      disagreement: null,
      scorePsi: null,
      disagreementInterval: null,
      scorePsiInterval: null,
      alpha,
      thresholds: sorted,
    };
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
    disagreementInterval: wilsonInterval(differ, pairs.length, alpha),
    scorePsiInterval: psiInterval(pairs, alpha),
    alpha,
    thresholds: sorted,
  };
}
