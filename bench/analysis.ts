/**
 * Decision-quality benchmark: promote's error-rate guardrail against the rules of other canary
 * tools, run on the same simulated request traces (`npm run bench:analysis`, `-- --quick` for a
 * few seconds). Prints one JSON object.
 *
 * Traces: 200 requests/s, 5% to the candidate, a one-hour bake, per second the requests of each
 * version and their errors (Bernoulli per request, drawn as binomials from a seeded generator).
 * Every rule sees the same traces. Rules:
 *   promote        testRateRatio (src/analysis/sequential), tolerance 0, alpha 0.01, checked every second
 *   promote-tol50  the same with tolerance 0.5 (relativeIncrease: 0.5)
 *   flagger        every 60 s: candidate success rate over the last minute >= 99%, else a failed
 *                  check; rollback at the 5th failed check (passes do not reset the count)
 *   argo-fl0/fl3   every 5 min: candidate success rate over the last 5 minutes >= 99%, else a
 *                  failure; rollback when failures exceed failureLimit (0 or 3)
 *   kayenta        every 15 min: Mann-Whitney U (normal approximation, tie-corrected) on the 15
 *                  per-minute error rates of candidate and champion; rollback when the candidate's
 *                  are higher at 98% confidence (two-sided)
 *   oracle-sprt    Wald's SPRT on the candidate's requests knowing p0 = the champion's rate and
 *                  p1 = the candidate's true rate (alpha = beta = 0.01), checked every second; the
 *                  lower bound on what any test can do (only where p1 != p0)
 * Per rule and scenario: runs, rollbackRate with its 95% Wilson interval, exposureMedian and
 * exposureP90 (candidate requests served before its traffic is cut, over the runs that rolled
 * back), timeMedianS (seconds to rollback, same runs).
 *
 *   npm run bench:analysis -- [--quick] [--runs 2000] [--seed 7] [--scenario NAME]
 */
import binomial from '@stdlib/random-base-binomial';
import randu from '@stdlib/random-base-randu';
import normal from '@stdlib/random-base-normal';
import cdf from '@stdlib/stats-base-dists-normal-cdf';
import { assessLabels, compareLabels, type LabelledPrediction } from '../src/analysis/labels';
import type { Watch } from '../src/plan/schema';
import {
  histogramOf,
  LATENCY_EDGES_MS,
  testQuantileRatio,
  testRateRatio,
  testSampleRatio,
  type LatencyHistogram,
  type RatioBucket,
  type SrmSegment,
} from '../src/analysis/sequential';
import { wilsonInterval } from '../src/analysis/shadow';
import { quantile } from '../src/analysis/stats';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
};
const QUICK = process.argv.includes('--quick');
const RUNS = arg('runs', QUICK ? 60 : 2000);
/** Latency traces hold every request's latency: fewer runs. */
const LATENCY_RUNS = Math.max(1, Math.round(RUNS / 5));
/** Label traces are two weeks of labelled rows, each look a full AUC: fewer runs. */
const LABEL_RUNS = Math.max(1, Math.round(RUNS / 5));
const SEED = arg('seed', 7);
const RATE = 200;
const SHARE = 0.05;
const BAKE_S = QUICK ? 1800 : 3600;

interface Scenario {
  name: string;
  kind: 'errors' | 'latency' | 'srm';
  /** Error rates. */
  champion: number;
  candidate: number;
  /** The candidate's share of requests actually received (the route says SHARE). */
  observedShare?: number;
  /** Latency: lognormal with this median and log-sd for the champion; the candidate's times `factor`. */
  latency?: { medianMs: number; sigma: number; factor: number };
}
const SCENARIOS: Scenario[] = [
  { name: 'errors-1-2', kind: 'errors', champion: 0.01, candidate: 0.02 },
  { name: 'errors-0.1-0.5', kind: 'errors', champion: 0.001, candidate: 0.005 },
  { name: 'aa', kind: 'errors', champion: 0.01, candidate: 0.01 },
  { name: 'tolerance-edge', kind: 'errors', champion: 0.01, candidate: 0.015 },
  {
    name: 'latency-p99-20',
    kind: 'latency',
    champion: 0.01,
    candidate: 0.01,
    latency: { medianMs: 40, sigma: 0.5, factor: 1.2 },
  },
  // The route says 5%; the candidate gets 3% (2 points of traffic), and its errors double too.
  { name: 'srm-2', kind: 'srm', champion: 0.01, candidate: 0.02, observedShare: 0.03 },
  // The candidate gets 2% fewer requests than routed (4.9%), errors equal.
  { name: 'srm-2-relative', kind: 'srm', champion: 0.01, candidate: 0.01, observedShare: 0.049 },
];
const LATENCY_LOOK_S = 10;
/** The plan's guardrail minSamples default. */
const MIN_SAMPLES = 100;

/** Per second: requests and errors of each version; latency scenarios also each request's latency. */
interface Trace {
  nc: Int32Array;
  ec: Int32Array;
  nb: Int32Array;
  eb: Int32Array;
  /** Latencies (ms) in request order, and where each second's begin (length BAKE_S + 1). */
  latC?: Float64Array;
  latB?: Float64Array;
  offC?: Int32Array;
  offB?: Int32Array;
}

/** When a rule cut the candidate's traffic (second index, inclusive) and, for SRM scenarios, which test did. */
type Cut = { at: number; by?: 'srm' | 'rate' } | null;
type Rule = (t: Trace, s: Scenario) => Cut;
const at = (i: number | null): Cut => (i === null ? null : { at: i });

interface Draws {
  binomial: (n: number, p: number) => number;
  normal: () => number;
}

function makeTrace(d: Draws, s: Scenario): Trace {
  const t: Trace = {
    nc: new Int32Array(BAKE_S),
    ec: new Int32Array(BAKE_S),
    nb: new Int32Array(BAKE_S),
    eb: new Int32Array(BAKE_S),
  };
  for (let i = 0; i < BAKE_S; i++) {
    const nc = d.binomial(RATE, s.observedShare ?? SHARE);
    t.nc[i] = nc;
    t.nb[i] = RATE - nc;
    t.ec[i] = d.binomial(nc, s.candidate);
    t.eb[i] = d.binomial(RATE - nc, s.champion);
  }
  if (s.latency) {
    const { medianMs, sigma, factor } = s.latency;
    const fill = (counts: Int32Array, scale: number) => {
      const off = new Int32Array(BAKE_S + 1);
      for (let i = 0; i < BAKE_S; i++) off[i + 1] = off[i]! + counts[i]!;
      const lat = new Float64Array(off[BAKE_S]!);
      for (let k = 0; k < lat.length; k++) lat[k] = scale * medianMs * Math.exp(sigma * d.normal());
      return { off, lat };
    };
    const c = fill(t.nc, factor);
    const b = fill(t.nb, 1);
    Object.assign(t, { latC: c.lat, offC: c.off, latB: b.lat, offB: b.off });
  }
  return t;
}

const sum = (a: Int32Array, from: number, to: number) => {
  let x = 0;
  for (let i = Math.max(0, from); i < to; i++) x += a[i]!;
  return x;
};

function promoteRule(tolerance: number): Rule {
  return (t) => at(promoteRate(t, tolerance));
}

function promoteRate(t: Trace, tolerance: number): number | null {
  {
    // One split all bake long: one bucket of running counts is the same test as per-second buckets.
    const b: RatioBucket = {
      candidateRequests: 0,
      candidateEvents: 0,
      championRequests: 0,
      championEvents: 0,
    };
    for (let i = 0; i < BAKE_S; i++) {
      b.candidateRequests += t.nc[i]!;
      b.candidateEvents += t.ec[i]!;
      b.championRequests += t.nb[i]!;
      b.championEvents += t.eb[i]!;
      // The plan's minSamples (default 100): no verdict on fewer candidate requests.
      if (b.candidateRequests >= MIN_SAMPLES && testRateRatio([b], tolerance, 0.01).verdict === 'Fail')
        return i;
    }
    return null;
  }
}

/** Whether the candidate's window [from, to) passes the anchors' threshold check. */
function windowOk(t: Trace, s: Scenario, from: number, to: number): boolean {
  if (s.latency) {
    // p99 over the window at most 10% above the champion's true p99.
    const lat = Array.from(t.latC!.subarray(t.offC![from], t.offC![to]));
    if (lat.length === 0) return true;
    return quantile(lat, 0.99) <= 1.1 * trueP99(s.latency.medianMs, s.latency.sigma);
  }
  const n = sum(t.nc, from, to);
  const e = sum(t.ec, from, to);
  return n === 0 || 1 - e / n >= 0.99;
}

const trueP99 = (median: number, sigma: number) => median * Math.exp(sigma * 2.326348);

const flagger: Rule = (t, s) => {
  let failed = 0;
  for (let end = 60; end <= BAKE_S; end += 60) {
    if (!windowOk(t, s, end - 60, end)) failed++;
    if (failed >= 5) return at(end - 1);
  }
  return null;
};

function argo(failureLimit: number): Rule {
  return (t, s) => {
    let failures = 0;
    for (let end = 300; end <= BAKE_S; end += 300) {
      if (!windowOk(t, s, end - 300, end)) failures++;
      if (failures > failureLimit) return at(end - 1);
    }
    return null;
  };
}

/** Two-sided Mann-Whitney U p-value and whether x tends to be larger than y. */
function mannWhitney(x: number[], y: number[]): { p: number; xHigher: boolean } {
  const all = [...x.map((v) => ({ v, g: 0 })), ...y.map((v) => ({ v, g: 1 }))].sort((a, b) => a.v - b.v);
  const ranks = new Array<number>(all.length);
  let tieTerm = 0;
  for (let i = 0; i < all.length;) {
    let j = i;
    while (j + 1 < all.length && all[j + 1]!.v === all[i]!.v) j++;
    const rank = (i + j) / 2 + 1;
    for (let k = i; k <= j; k++) ranks[k] = rank;
    const size = j - i + 1;
    tieTerm += size ** 3 - size;
    i = j + 1;
  }
  let rx = 0;
  all.forEach((a, i) => {
    if (a.g === 0) rx += ranks[i]!;
  });
  const n1 = x.length;
  const n2 = y.length;
  const n = n1 + n2;
  const u = rx - (n1 * (n1 + 1)) / 2;
  const mean = (n1 * n2) / 2;
  const variance = ((n1 * n2) / 12) * (n + 1 - tieTerm / (n * (n - 1)));
  if (variance <= 0) return { p: 1, xHigher: false };
  const z = (Math.abs(u - mean) - 0.5) / Math.sqrt(variance);
  return { p: 2 * (1 - cdf(Math.max(z, 0), 0, 1)), xHigher: u > mean };
}

const kayenta: Rule = (t, s) => {
  for (let end = 900; end <= BAKE_S; end += 900) {
    const cand: number[] = [];
    const champ: number[] = [];
    for (let m = end - 900; m < end; m += 60) {
      if (s.latency) {
        // Per-minute p99 of each version.
        const c = Array.from(t.latC!.subarray(t.offC![m], t.offC![m + 60]));
        const b = Array.from(t.latB!.subarray(t.offB![m], t.offB![m + 60]));
        if (c.length > 0) cand.push(quantile(c, 0.99));
        if (b.length > 0) champ.push(quantile(b, 0.99));
        continue;
      }
      const nc = sum(t.nc, m, m + 60);
      const nb = sum(t.nb, m, m + 60);
      if (nc > 0) cand.push(sum(t.ec, m, m + 60) / nc);
      if (nb > 0) champ.push(sum(t.eb, m, m + 60) / nb);
    }
    const r = mannWhitney(cand, champ);
    if (r.xHigher && r.p < 0.02) return at(end - 1);
  }
  return null;
};

/** promote's latency guardrail: p99 confidence sequences, tolerance 0, alpha 0.01, every LATENCY_LOOK_S. */
const promoteLatency: Rule = (t) => {
  const c = new Array<number>(LATENCY_EDGES_MS.length).fill(0);
  const b = new Array<number>(LATENCY_EDGES_MS.length).fill(0);
  const hc: LatencyHistogram = { edges: LATENCY_EDGES_MS, counts: c, overflow: 0 };
  const hb: LatencyHistogram = { edges: LATENCY_EDGES_MS, counts: b, overflow: 0 };
  const add = (h: LatencyHistogram, counts: number[], lat: Float64Array) => {
    const one = histogramOf(lat);
    one.counts.forEach((k, i) => (counts[i]! += k));
    (h as { overflow: number }).overflow += one.overflow;
  };
  for (let end = LATENCY_LOOK_S; end <= BAKE_S; end += LATENCY_LOOK_S) {
    add(hc, c, t.latC!.subarray(t.offC![end - LATENCY_LOOK_S], t.offC![end]));
    add(hb, b, t.latB!.subarray(t.offB![end - LATENCY_LOOK_S], t.offB![end]));
    if (testQuantileRatio(hc, hb, 0.99, 0, 0.01).verdict === 'Fail') return at(end - 1);
  }
  return null;
};

/** promote with its sample-ratio check (alpha 0.001) before the error-rate test, every second. */
const promoteSrm: Rule = (t) => {
  const seg: SrmSegment = { expectedShare: SHARE, candidateRequests: 0, championRequests: 0 };
  const b: RatioBucket = { candidateRequests: 0, candidateEvents: 0, championRequests: 0, championEvents: 0 };
  for (let i = 0; i < BAKE_S; i++) {
    seg.candidateRequests += t.nc[i]!;
    seg.championRequests += t.nb[i]!;
    b.candidateRequests += t.nc[i]!;
    b.candidateEvents += t.ec[i]!;
    b.championRequests += t.nb[i]!;
    b.championEvents += t.eb[i]!;
    if (testSampleRatio([seg], 0.001).verdict === 'Fail') return { at: i, by: 'srm' };
    if (testRateRatio([b], 0, 0.01).verdict === 'Fail') return { at: i, by: 'rate' };
  }
  return null;
};

const oracle: Rule = (t, s) => at(oracleAt(t, s));

function oracleAt(t: Trace, s: Scenario): number | null {
  const p0 = s.champion;
  const p1 = s.candidate;
  const upper = Math.log(0.99 / 0.01);
  const lower = Math.log(0.01 / 0.99);
  const a = Math.log(p1 / p0);
  const b = Math.log((1 - p1) / (1 - p0));
  let llr = 0;
  for (let i = 0; i < BAKE_S; i++) {
    llr += t.ec[i]! * a + (t.nc[i]! - t.ec[i]!) * b;
    if (llr >= upper) return i;
    if (llr <= lower) return null;
  }
  return null;
}

const errors = (s: Scenario) => s.kind === 'errors';
const RULES: { name: string; rule: Rule; applies: (s: Scenario) => boolean }[] = [
  { name: 'promote', rule: promoteRule(0), applies: errors },
  { name: 'promote', rule: promoteLatency, applies: (s) => s.kind === 'latency' },
  { name: 'promote', rule: promoteSrm, applies: (s) => s.kind === 'srm' },
  { name: 'promote-tol50', rule: promoteRule(0.5), applies: errors },
  { name: 'flagger', rule: flagger, applies: (s) => s.kind !== 'srm' },
  { name: 'argo-fl0', rule: argo(0), applies: (s) => s.kind !== 'srm' },
  { name: 'argo-fl3', rule: argo(3), applies: (s) => s.kind !== 'srm' },
  { name: 'kayenta', rule: kayenta, applies: (s) => s.kind !== 'srm' },
  { name: 'oracle-sprt', rule: oracle, applies: (s) => errors(s) && s.candidate !== s.champion },
];

/** 95% Wilson score interval for k successes in n (two-sided: 2.5% on each side). */
function wilson(k: number, n: number): [number, number] {
  const { lower, upper } = wilsonInterval(k, n, 0.025);
  return [lower, upper];
}

const pct = (sorted: number[], q: number): number | null =>
  sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const round = (x: number, d = 4) => Number(x.toFixed(d));

/**
 * Delayed labels during the watch: labelled predictions at LABEL_RATE per second, 90% served by
 * the candidate and 10% by the champion (the holdback); each label arrives after a lognormal delay
 * (median 1 day, log-sd 1). Scores: the logistic of N(0, 1) for negatives and of N(delta, 1) for
 * positives (AUC = Φ(delta/√2)), prevalence 0.3. promote's rule is the workflow's, run as it runs
 * it: every 6 hours, compareLabels on the rows whose labels have arrived (only predictions older
 * than the 0.9 quantile of the observed delays count) and assessLabels with metric auc,
 * maxRegression 0, alpha 0.01, τ 0.03, minLabels 100. The fixed-horizon reference sees the same
 * matured rows: the labels a one-sided z-test (alpha 0.01, power 0.8) needs for the same drop, from
 * the exact asymptotic variance of the AUC under this binormal model, and the time until that many
 * matured labels are expected.
 */
const LABEL_SCENARIOS = [
  { name: 'labels-auc-3', candidateDelta: 1.294, championDelta: 1.466 }, // AUC 0.82 vs 0.85
  { name: 'labels-aa', candidateDelta: 1.466, championDelta: 1.466 },
];
const LABEL_RATE = 0.05;
const LABEL_DAYS = 14;
const LABEL_LOOK_S = 6 * 3600;
const DELAY_MEDIAN_S = 86_400;
const DELAY_SIGMA = 1;
const PREVALENCE = 0.3;
const HOLDBACK = 0.1;
const LABEL_RULE: NonNullable<Watch['labels']> = {
  metric: 'auc',
  maxRegression: 0,
  minLabels: 100,
  alpha: 0.01,
  tau: 0.03,
  maturity: 0.9,
  passWhen: 'excluded',
};

interface LabelledRow extends LabelledPrediction {
  champion: boolean;
}

/** Two weeks of predictions (times and label arrivals in ms), sorted by label arrival. */
function labelledRows(
  u: () => number,
  gauss: () => number,
  candidateDelta: number,
  championDelta: number,
): LabelledRow[] {
  const horizon = LABEL_DAYS * 86_400;
  const rows: LabelledRow[] = [];
  for (let t = -Math.log(1 - u()) / LABEL_RATE; t < horizon; t += -Math.log(1 - u()) / LABEL_RATE) {
    const champion = u() < HOLDBACK;
    const label = u() < PREVALENCE ? 1 : 0;
    const delta = champion ? championDelta : candidateDelta;
    const arrival = t + DELAY_MEDIAN_S * Math.exp(DELAY_SIGMA * gauss());
    rows.push({
      atMs: t * 1000,
      labelAtMs: arrival * 1000,
      score: 1 / (1 + Math.exp(-(label * delta + gauss()))),
      label,
      champion,
    });
  }
  return rows.sort((a, b) => a.labelAtMs - b.labelAtMs);
}

/** The workflow's label check at time `nowS` on the rows whose labels have arrived. */
function labelLookFails(arrived: readonly LabelledRow[], nowS: number): boolean {
  const c = compareLabels(
    { version: 'candidate', rows: arrived.filter((r) => !r.champion) },
    { version: 'champion', rows: arrived.filter((r) => r.champion) },
    nowS * 1000,
    LABEL_RULE.maturity,
  );
  return assessLabels(LABEL_RULE, c).verdict === 'Fail';
}

const delayCdf = (d: number) =>
  d <= 0 ? 0 : cdf((Math.log(d) - Math.log(DELAY_MEDIAN_S)) / DELAY_SIGMA, 0, 1);
const delayPdf = (d: number) =>
  d <= 0
    ? 0
    : Math.exp(-((Math.log(d / DELAY_MEDIAN_S) / DELAY_SIGMA) ** 2) / 2) /
      (d * DELAY_SIGMA * Math.sqrt(2 * Math.PI));

/** ∫a^b f by the midpoint rule on `steps` steps. */
function integrate(f: (x: number) => number, a: number, b: number, steps = 2000): number {
  if (b <= a) return 0;
  const h = (b - a) / steps;
  let sum = 0;
  for (let i = 0; i < steps; i++) sum += f(a + (i + 0.5) * h);
  return sum * h;
}

/**
 * The maturity cut-off the workflow computes at time T, in expectation: the `maturity` quantile of
 * the delays observed by T. Predictions arrive uniformly over [0, T], so a delay d is observed
 * with density ∝ f(d)(T - d) on [0, T].
 */
function expectedMaturityDelay(T: number): number {
  const mass = (x: number) => integrate((d) => delayPdf(d) * (T - d), 0, x);
  const total = mass(T);
  let lo = 0;
  let hi = T;
  for (let i = 0; i < 40; i++) {
    const mid = (lo + hi) / 2;
    if (mass(mid) >= LABEL_RULE.maturity * total) hi = mid;
    else lo = mid;
  }
  return hi;
}

/** Matured labelled predictions expected by time T: those made before T - q with labels by T. */
function expectedMatured(T: number): number {
  const q = expectedMaturityDelay(T);
  return LABEL_RATE * integrate((age) => delayCdf(age), q, T);
}

/**
 * Var[Φ(δ + Z)], Z ~ N(0, 1): the per-row variance of the AUC's placement values under the
 * binormal model (the same for positives and negatives), so Var(AUC) = v / (n π (1 - π)) for n
 * rows with prevalence π (DeLong's asymptotic variance).
 */
function placementVariance(delta: number): number {
  const mean = cdf(delta / Math.SQRT2, 0, 1);
  const second = integrate(
    (z) => (cdf(delta + z, 0, 1) ** 2 * Math.exp((-z * z) / 2)) / Math.sqrt(2 * Math.PI),
    -9,
    9,
    4000,
  );
  return second - mean * mean;
}

/** The time a fixed-horizon test must wait for enough matured labels to detect the drop. */
function fixedHorizonWaitS(candidateDelta: number, championDelta: number): number {
  const drop = cdf(championDelta / Math.SQRT2, 0, 1) - cdf(candidateDelta / Math.SQRT2, 0, 1);
  const z = 2.326348 + 0.841621; // one-sided alpha 0.01, power 0.8
  const pq = PREVALENCE * (1 - PREVALENCE);
  // n matured rows in all: Var = vc / (pq (1 - h) n) + vb / (pq h n) = (drop / z)^2.
  const n =
    (placementVariance(candidateDelta) / (1 - HOLDBACK) + placementVariance(championDelta) / HOLDBACK) /
    (pq * (drop / z) ** 2);
  let lo = 0;
  let hi = 365 * 86_400;
  for (let i = 0; i < 50; i++) {
    const mid = (lo + hi) / 2;
    if (expectedMatured(mid) >= n) hi = mid;
    else lo = mid;
  }
  return hi;
}

function runLabelScenario(sc: (typeof LABEL_SCENARIOS)[number], index: number): Record<string, unknown> {
  const uniform = randu.factory({ seed: SEED * 1000 + 100 + index });
  const normalDraw = normal.factory({ prng: uniform });
  const gauss = () => normalDraw(0, 1);
  const u = () => uniform();
  const runs = LABEL_RUNS;
  const times: number[] = [];
  for (let run = 0; run < runs; run++) {
    const rows = labelledRows(u, gauss, sc.candidateDelta, sc.championDelta);
    let arrived = 0;
    for (let look = LABEL_LOOK_S; look <= LABEL_DAYS * 86_400; look += LABEL_LOOK_S) {
      while (arrived < rows.length && rows[arrived]!.labelAtMs <= look * 1000) arrived++;
      if (labelLookFails(rows.slice(0, arrived), look)) {
        times.push(look);
        break;
      }
    }
  }
  times.sort((a, b) => a - b);
  const [low, high] = wilson(times.length, runs);
  const drop = sc.candidateDelta !== sc.championDelta;
  const wait = drop ? fixedHorizonWaitS(sc.candidateDelta, sc.championDelta) : null;
  const median = pct(times, 0.5);
  return {
    rule: 'promote',
    scenario: sc.name,
    runs,
    rollbackRate: round(times.length / runs),
    rollbackRateLow: round(low),
    rollbackRateHigh: round(high),
    exposureMedian: null,
    exposureP90: null,
    timeMedianS: median,
    ...(wait !== null
      ? {
          fixedHorizonWaitS: Math.round(wait),
          timeMedianOverFixedHorizon: median === null ? null : round(median / wait, 3),
        }
      : {}),
  };
}

function main(): void {
  const started = Date.now();
  const rows: Record<string, unknown>[] = [];
  const only = process.argv.includes('--scenario')
    ? (process.argv[process.argv.indexOf('--scenario') + 1] ?? '')
    : undefined;
  const names = [...SCENARIOS, ...LABEL_SCENARIOS].map((s) => s.name);
  if (only !== undefined && !names.includes(only)) throw new Error(`--scenario: one of ${names.join(', ')}`);
  for (const [si, scenario] of SCENARIOS.entries()) {
    if (only !== undefined && scenario.name !== only) continue;
    const uniform = randu.factory({ seed: SEED * 1000 + si });
    const draw = binomial.factory({ prng: uniform });
    const normalDraw = normal.factory({ prng: uniform });
    const draws: Draws = {
      binomial: (n, p) => (n === 0 || p === 0 ? 0 : draw(n, p)),
      normal: () => normalDraw(0, 1),
    };
    const rules = RULES.filter((r) => r.applies(scenario));
    const cut = rules.map(() => ({ exposures: [] as number[], times: [] as number[], bySrm: 0 }));
    const runs = scenario.kind === 'latency' ? LATENCY_RUNS : RUNS;
    for (let run = 0; run < runs; run++) {
      const trace = makeTrace(draws, scenario);
      rules.forEach((r, i) => {
        const c = r.rule(trace, scenario);
        if (c !== null) {
          cut[i]!.exposures.push(sum(trace.nc, 0, c.at + 1));
          cut[i]!.times.push(c.at + 1);
          if (c.by === 'srm') cut[i]!.bySrm++;
        }
      });
    }
    rules.forEach((r, i) => {
      const { exposures, times, bySrm } = cut[i]!;
      exposures.sort((a, b) => a - b);
      times.sort((a, b) => a - b);
      const [low, high] = wilson(exposures.length, runs);
      rows.push({
        rule: r.name,
        scenario: scenario.name,
        runs,
        ...(scenario.kind === 'srm' ? { srmFirstRate: round(bySrm / runs) } : {}),
        rollbackRate: round(exposures.length / runs),
        rollbackRateLow: round(low),
        rollbackRateHigh: round(high),
        exposureMedian: pct(exposures, 0.5),
        exposureP90: pct(exposures, 0.9),
        timeMedianS: pct(times, 0.5),
      });
    });
    process.stderr.write(
      `bench:analysis: ${scenario.name} done (${Math.round((Date.now() - started) / 1000)} s)\n`,
    );
  }
  for (const [i, sc] of LABEL_SCENARIOS.entries()) {
    if (only !== undefined && sc.name !== only) continue;
    rows.push(runLabelScenario(sc, i));
    process.stderr.write(
      `bench:analysis: ${sc.name} done (${Math.round((Date.now() - started) / 1000)} s)\n`,
    );
  }
  const out = {
    command: `npm run bench:analysis --${QUICK ? ' --quick' : ''} --runs ${RUNS} --seed ${SEED}`,
    traces: { requestsPerS: RATE, candidateShare: SHARE, bakeS: BAKE_S, seed: SEED },
    scenarios: [...SCENARIOS, ...LABEL_SCENARIOS],
    results: rows,
    seconds: Math.round((Date.now() - started) / 1000),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

try {
  main();
} catch (err) {
  process.stderr.write(`bench:analysis: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(2);
}
