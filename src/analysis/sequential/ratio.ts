/**
 * Always-valid two-sample test of the candidate's event rate (errors) against the champion's with
 * a tolerance: H0: rate_candidate <= (1 + tolerance) * rate_champion. Pure.
 *
 * Method: condition on the events. When events arrive as Poisson processes with intensities
 * λc·nc and λb·nb (nc, nb: requests served in a time bucket), each event of the bucket is the
 * candidate's with probability θ(ρ) = ρ·nc / (ρ·nc + nb), where ρ = λc/λb is the rate ratio;
 * the champion's unknown rate cancels. The likelihood ratio of θ(ρ) against θ(ρ0) over the buckets
 * is monotone in ρ, so the mixture over ρ > ρ0 (`above`) is a test supermartingale under every
 * ρ <= ρ0, and the mixture over ρ < ρ0 (`below`) under every ρ >= ρ0 (see mixture.ts). Buckets let
 * the traffic split change over a promotion (each bucket uses its own split); a bucket should not
 * span a split change. For rare events (error rates of a few percent) Bernoulli requests are
 * close to Poisson; the calibration tests simulate Bernoulli requests.
 *
 * The conditioning idea is the classical conditional test for two Poisson rates (Przyborowski &
 * Wilenski 1940; Lehmann & Romano, Testing Statistical Hypotheses, 4.5); the sequential mixture is
 * Robbins's method of mixtures.
 */
import { checkAlpha, RATE_EFFECTS, RATE_WEIGHTS, type SequentialVerdict } from './bernoulli';
import { bernoulliKl, effectMixture, logMixture, type Mixture } from './mixture';

/** Requests and events of both versions in one time bucket with one traffic split. */
export interface RatioBucket {
  candidateRequests: number;
  candidateEvents: number;
  championRequests: number;
  championEvents: number;
}

export interface RatioTest {
  verdict: SequentialVerdict;
  logEvidenceAbove: number;
  logEvidenceBelow: number;
  logThreshold: number;
  /** The rate ratio ρ0 = 1 + tolerance the test is against. */
  boundary: number;
  /** Observed rates over all buckets (null without requests) and their ratio (null without champion events). */
  candidateRate: number | null;
  championRate: number | null;
  ratio: number | null;
  candidateRequests: number;
  championRequests: number;
  /** Rough further candidate requests to a decision at the current rates and split; null when none is expected. */
  expectedMoreSamples: number | null;
}

const ABOVE = effectMixture(RATE_EFFECTS, 'up', RATE_WEIGHTS);
const BELOW = effectMixture(RATE_EFFECTS, 'down', RATE_WEIGHTS);

function logRatios(mixture: Mixture, buckets: readonly RatioBucket[], rho0: number): number[] {
  return mixture.points.map((d) => {
    const rho = rho0 * Math.exp(d);
    let sum = 0;
    for (const b of buckets) {
      if (b.candidateEvents + b.championEvents === 0) continue;
      if (b.candidateRequests === 0 || b.championRequests === 0) continue; // no information on ρ
      const theta = (rho * b.candidateRequests) / (rho * b.candidateRequests + b.championRequests);
      const theta0 = (rho0 * b.candidateRequests) / (rho0 * b.candidateRequests + b.championRequests);
      sum +=
        b.candidateEvents * Math.log(theta / theta0) +
        b.championEvents * Math.log((1 - theta) / (1 - theta0));
    }
    return sum;
  });
}

function checkBucket(b: RatioBucket, i: number): void {
  for (const [k, v] of Object.entries(b))
    if (!(Number.isInteger(v) && v >= 0))
      throw new Error(`bucket ${i}: ${k} must be a whole number >= 0, got ${v}`);
  if (b.candidateEvents > b.candidateRequests || b.championEvents > b.championRequests)
    throw new Error(`bucket ${i}: more events than requests`);
}

export function testRateRatio(buckets: readonly RatioBucket[], tolerance: number, alpha: number): RatioTest {
  if (!(tolerance >= 0 && Number.isFinite(tolerance)))
    throw new Error(`tolerance must be >= 0, got ${tolerance}`);
  checkAlpha(alpha);
  buckets.forEach(checkBucket);
  const rho0 = 1 + tolerance;
  const logThreshold = Math.log(1 / alpha);
  const above = logMixture(ABOVE, logRatios(ABOVE, buckets, rho0));
  const below = logMixture(BELOW, logRatios(BELOW, buckets, rho0));
  const sum = (k: keyof RatioBucket) => buckets.reduce((s, b) => s + b[k], 0);
  const nc = sum('candidateRequests');
  const nb = sum('championRequests');
  const ec = sum('candidateEvents');
  const eb = sum('championEvents');
  const candidateRate = nc > 0 ? ec / nc : null;
  const championRate = nb > 0 ? eb / nb : null;
  const ratio = candidateRate !== null && championRate ? candidateRate / championRate : null;
  const verdict: SequentialVerdict =
    above >= logThreshold ? 'Fail' : below >= logThreshold ? 'Pass' : 'Inconclusive';
  let expectedMoreSamples: number | null = null;
  const last = buckets.at(-1);
  if (verdict === 'Inconclusive' && last && nc > 0 && nb > 0 && ec + eb > 0) {
    // At the latest split: events per candidate request, and the evidence each event carries
    // about ρ̂ against ρ0 (ρ̂ with half an event added to each side so it is finite).
    const rhoHat = (ec + 0.5) / nc / ((eb + 0.5) / nb);
    if (Math.abs(Math.log(rhoHat / rho0)) > 1e-9) {
      const split =
        last.candidateRequests > 0 && last.championRequests > 0
          ? last
          : { candidateRequests: nc, championRequests: nb };
      const r = split.championRequests / split.candidateRequests;
      const theta = rhoHat / (rhoHat + r);
      const theta0 = rho0 / (rho0 + r);
      const eventsPerCandidateRequest = (ec + eb) / nc;
      const missing = logThreshold - (rhoHat > rho0 ? above : below);
      expectedMoreSamples = Math.ceil(missing / (bernoulliKl(theta, theta0) * eventsPerCandidateRequest));
    }
  }
  return {
    verdict,
    logEvidenceAbove: above,
    logEvidenceBelow: below,
    logThreshold,
    boundary: rho0,
    candidateRate,
    championRate,
    ratio,
    candidateRequests: nc,
    championRequests: nb,
    expectedMoreSamples,
  };
}
