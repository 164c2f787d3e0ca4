/**
 * Always-valid one-sample test of a rate against a limit (an absolute guardrail such as
 * `error_rate max 0.05`, or the share of requests slower than a latency limit). Pure.
 *
 * Two one-sided mixture tests on the Bernoulli log-odds (see mixture.ts): `above` against
 * H0: p <= limit, with alternatives whose odds exceed the limit's by the mixture's factors;
 * `below` against H0: p >= limit. Each holds its error at α over every look. The verdict is Fail
 * when `above` rejects, Pass when `below` rejects, Inconclusive otherwise.
 */
import { bernoulliKl, effectMixture, logistic, logit, logMixture, type Mixture } from './mixture';

/** Odds factors the tests are sensitive to, from 20% more to 10-fold, and their weights (chosen with bench/analysis.ts). */
export const RATE_EFFECTS = [1.2, 1.5, 2, 2.5, 3, 4, 6, 10] as const;
export const RATE_WEIGHTS = [1, 2, 2, 1.5, 1, 1, 0.5, 0.5] as const;
const ABOVE = effectMixture(RATE_EFFECTS, 'up', RATE_WEIGHTS);
const BELOW = effectMixture(RATE_EFFECTS, 'down', RATE_WEIGHTS);

export type SequentialVerdict = 'Fail' | 'Pass' | 'Inconclusive';

export interface LimitTest {
  verdict: SequentialVerdict;
  /** log e-value against H0: p <= limit (Fail at log(1/α)). */
  logEvidenceAbove: number;
  /** log e-value against H0: p >= limit (Pass at log(1/α)). */
  logEvidenceBelow: number;
  /** log(1/α): the threshold either must reach. */
  logThreshold: number;
  /** Observed rate; null when there are no samples. */
  rate: number | null;
  /**
   * Rough number of further samples to a decision, if the rate stays where it is: the missing
   * evidence over the expected evidence per sample. Null when decided or when the rate is at the
   * limit (no decision expected).
   */
  expectedMoreSamples: number | null;
}

/** Sum of the log likelihood ratios of `events` in `n` Bernoulli trials, p = logistic(logit(p0)+d), vs p0. */
function logRatios(mixture: Mixture, events: number, n: number, p0: number): number[] {
  const base = logit(p0);
  return mixture.points.map((d) => {
    const p = logistic(base + d);
    return events * Math.log(p / p0) + (n - events) * Math.log((1 - p) / (1 - p0));
  });
}

/** Both one-sided log e-values of `events` in `n` trials against the rate `p0` (no argument checks). */
export function rateEvidence(events: number, n: number, p0: number): { above: number; below: number } {
  return {
    above: logMixture(ABOVE, logRatios(ABOVE, events, n, p0)),
    below: logMixture(BELOW, logRatios(BELOW, events, n, p0)),
  };
}

export function checkAlpha(alpha: number): void {
  if (!(alpha > 0 && alpha < 1)) throw new Error(`alpha must be in (0, 1), got ${alpha}`);
}

/** The test's state is its counts: recompute it from the window's events and trials at any look. */
export function testRateLimit(events: number, n: number, limit: number, alpha: number): LimitTest {
  if (!(limit > 0 && limit < 1)) throw new Error(`rate limit must be in (0, 1), got ${limit}`);
  checkAlpha(alpha);
  if (!(Number.isInteger(events) && Number.isInteger(n) && events >= 0 && events <= n))
    throw new Error(`counts must be whole numbers with 0 <= events <= n, got ${events}/${n}`);
  const logThreshold = Math.log(1 / alpha);
  const { above, below } = rateEvidence(events, n, limit);
  const rate = n > 0 ? events / n : null;
  const verdict: SequentialVerdict =
    above >= logThreshold ? 'Fail' : below >= logThreshold ? 'Pass' : 'Inconclusive';
  let expectedMoreSamples: number | null = null;
  if (verdict === 'Inconclusive' && rate !== null && rate !== limit) {
    // Clamp away from 0 and 1 so a few samples do not promise certainty.
    const p = Math.min(Math.max(rate, 0.5 / (n + 1)), 1 - 0.5 / (n + 1));
    const missing = logThreshold - (rate > limit ? above : below);
    expectedMoreSamples = Math.ceil(missing / bernoulliKl(p, limit));
  }
  return {
    verdict,
    logEvidenceAbove: above,
    logEvidenceBelow: below,
    logThreshold,
    rate,
    expectedMoreSamples,
  };
}
