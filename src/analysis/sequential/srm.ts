/**
 * Sample ratio mismatch: does the observed split of requests between candidate and champion match
 * the route's weights? An always-valid two-sided test. Pure.
 *
 * Each segment has the candidate's expected share w (from the route in force). Alternatives
 * multiply the candidate's odds of receiving a request by a factor φ: share(φ) = φw / (φw + 1 - w).
 * The mixture over φ above and below 1 of the likelihood ratios against φ = 1, multiplied over
 * segments, is a test martingale under "the split matches the weights" (mixture.ts). A discrete
 * mixture in place of the Dirichlet one of Lindon & Malek ("Anytime-valid inference for
 * multinomial count data", NeurIPS 2022), which also motivates SRM as a sequential test; segments
 * let the weights change over a canary.
 */
import { checkAlpha, type SequentialVerdict } from './bernoulli';
import { effectMixture, logMixture } from './mixture';

/** Requests each version received while the route gave the candidate `expectedShare` (0 < w < 1). */
export interface SrmSegment {
  expectedShare: number;
  candidateRequests: number;
  championRequests: number;
}

export interface SrmTest {
  /** Fail: the split does not match the route; Pass is never claimed (a match cannot be proven). */
  verdict: Extract<SequentialVerdict, 'Fail' | 'Inconclusive'>;
  logEvidence: number;
  logThreshold: number;
  /** Over all segments: candidate requests expected from the weights, and observed. */
  expectedCandidate: number;
  observedCandidate: number;
  total: number;
}

/** Odds factors from 1% to 3-fold: mismatches from losing a few requests to a broken route. */
export const SRM_EFFECTS = [1.01, 1.02, 1.05, 1.1, 1.25, 1.5, 2, 3] as const;
const MIXTURE = effectMixture(SRM_EFFECTS, 'both');

export function testSampleRatio(segments: readonly SrmSegment[], alpha: number): SrmTest {
  checkAlpha(alpha);
  segments.forEach((s, i) => {
    if (!(s.expectedShare > 0 && s.expectedShare < 1))
      throw new Error(`segment ${i}: expected share must be in (0, 1), got ${s.expectedShare}`);
    for (const k of ['candidateRequests', 'championRequests'] as const)
      if (!(Number.isInteger(s[k]) && s[k] >= 0))
        throw new Error(`segment ${i}: ${k} must be a whole number >= 0`);
  });
  const logRatios = MIXTURE.points.map((d) => {
    const factor = Math.exp(d);
    let sum = 0;
    for (const s of segments) {
      const w = s.expectedShare;
      const share = (factor * w) / (factor * w + 1 - w);
      sum += s.candidateRequests * Math.log(share / w) + s.championRequests * Math.log((1 - share) / (1 - w));
    }
    return sum;
  });
  const logEvidence = logMixture(MIXTURE, logRatios);
  const logThreshold = Math.log(1 / alpha);
  let expectedCandidate = 0;
  let observedCandidate = 0;
  let total = 0;
  for (const s of segments) {
    const n = s.candidateRequests + s.championRequests;
    expectedCandidate += n * s.expectedShare;
    observedCandidate += s.candidateRequests;
    total += n;
  }
  return {
    verdict: logEvidence >= logThreshold ? 'Fail' : 'Inconclusive',
    logEvidence,
    logThreshold,
    expectedCandidate,
    observedCandidate,
    total,
  };
}
