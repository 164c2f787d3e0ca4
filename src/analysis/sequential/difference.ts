/**
 * Always-valid comparison of a quality metric between candidate and champion (delayed labels:
 * AUC, log loss, accuracy) from an estimate of the difference and its variance. Pure.
 *
 * Method: the normal-mixture boundary (Robbins 1970) applied to an asymptotically normal estimate,
 * as in the mixture SPRT of Johari, Koomen, Pekelis & Walsh ("Always valid inference", Oper. Res.
 * 2022) and the asymptotic confidence sequences of Waudby-Smith, Arbour, Sinha, Kennedy & Ramdas
 * ("Time-uniform central limit theory and asymptotic confidence sequences", Ann. Statist. 2024).
 * With V the variance of the estimate and τ² the mixing variance, the interval
 *   estimate ± sqrt( V (V + τ²) / τ² · (2 log(1/α) + log((V + τ²) / V)) )
 * covers the true difference at every look with probability about 1 - α (asymptotically: the
 * estimate must be close to normal, so a minimum of labelled rows still applies). τ is the
 * difference the test is tuned to detect fastest.
 */
import { midranks } from '../stats';
import { checkAlpha, type SequentialVerdict } from './bernoulli';

export interface DifferenceInterval {
  lower: number;
  upper: number;
}

/** The always-valid interval for a difference estimated as `estimate` with variance `variance`. */
export function mixtureInterval(
  estimate: number,
  variance: number,
  alpha: number,
  tau: number,
): DifferenceInterval {
  checkAlpha(alpha);
  if (!(tau > 0 && Number.isFinite(tau))) throw new Error(`tau must be > 0, got ${tau}`);
  if (!(variance >= 0) || !Number.isFinite(estimate)) return { lower: -Infinity, upper: Infinity };
  if (variance === 0) return { lower: estimate, upper: estimate };
  const t2 = tau * tau;
  const half = Math.sqrt(
    ((variance * (variance + t2)) / t2) * (2 * Math.log(1 / alpha) + Math.log((variance + t2) / variance)),
  );
  return { lower: estimate - half, upper: estimate + half };
}

export interface RegressionTest {
  verdict: SequentialVerdict;
  interval: DifferenceInterval;
  /** candidate - champion, in the metric's unit, oriented so that higher is better. */
  difference: number;
}

/**
 * Candidate minus champion for a higher-is-better metric (for log loss, pass the negated
 * difference). Fail when a regression beyond `maxRegression` is significant (the whole interval
 * is below -maxRegression), Pass when it is excluded (the whole interval is above it).
 */
export function testRegression(
  difference: number,
  variance: number,
  maxRegression: number,
  alpha: number,
  tau: number,
): RegressionTest {
  if (!(maxRegression >= 0)) throw new Error(`maxRegression must be >= 0, got ${maxRegression}`);
  const interval = mixtureInterval(difference, variance, alpha, tau);
  const verdict: SequentialVerdict =
    interval.upper < -maxRegression ? 'Fail' : interval.lower > -maxRegression ? 'Pass' : 'Inconclusive';
  return { verdict, interval, difference };
}

export interface AucEstimate {
  auc: number;
  /** DeLong's variance of the AUC estimate. */
  variance: number;
  positives: number;
  negatives: number;
}

/**
 * AUC with DeLong's variance (DeLong, DeLong & Clarke-Pearson, Biometrics 1988) via midranks
 * (Sun & Xu, IEEE Signal Process. Lett. 2014): O(n log n). Null when a class is missing.
 */
export function aucWithVariance(scores: readonly number[], labels: readonly number[]): AucEstimate | null {
  if (scores.length !== labels.length) throw new Error('one label per score');
  const pos: number[] = [];
  const neg: number[] = [];
  scores.forEach((s, i) => (labels[i] === 1 ? pos : neg).push(s));
  const m = pos.length;
  const n = neg.length;
  if (m === 0 || n === 0) return null;
  const all = [...pos, ...neg];
  const rAll = midranks(all);
  const rPos = midranks(pos);
  const rNeg = midranks(neg);
  // Placements: v10[i] = share of negatives below positive i; v01[j] = share of positives above negative j.
  const v10 = new Float64Array(m);
  const v01 = new Float64Array(n);
  let sum10 = 0;
  for (let i = 0; i < m; i++) {
    v10[i] = (rAll[i]! - rPos[i]!) / n;
    sum10 += v10[i]!;
  }
  for (let j = 0; j < n; j++) v01[j] = 1 - (rAll[m + j]! - rNeg[j]!) / m;
  const auc = sum10 / m;
  const variance10 = m > 1 ? v10.reduce((s, v) => s + (v - auc) ** 2, 0) / (m - 1) : 0;
  const variance01 = n > 1 ? v01.reduce((s, v) => s + (v - auc) ** 2, 0) / (n - 1) : 0;
  return { auc, variance: variance10 / m + variance01 / n, positives: m, negatives: n };
}
