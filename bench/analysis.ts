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
 *   npm run bench:analysis -- [--quick] [--runs 1000] [--seed 7] [--scenario NAME]
 */
import binomial from '@stdlib/random-base-binomial';
import randu from '@stdlib/random-base-randu';
import cdf from '@stdlib/stats-base-dists-normal-cdf';
import { testRateRatio, type RatioBucket } from '../src/analysis/sequential';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const v = Number(process.argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name} needs a positive number`);
  return v;
};
const QUICK = process.argv.includes('--quick');
const RUNS = arg('runs', QUICK ? 60 : 1000);
const SEED = arg('seed', 7);
const RATE = 200;
const SHARE = 0.05;
const BAKE_S = QUICK ? 1800 : 3600;

interface Scenario {
  name: string;
  champion: number;
  candidate: number;
}
const SCENARIOS: Scenario[] = [
  { name: 'errors-1-2', champion: 0.01, candidate: 0.02 },
  { name: 'errors-0.1-0.5', champion: 0.001, candidate: 0.005 },
  { name: 'aa', champion: 0.01, candidate: 0.01 },
  { name: 'tolerance-edge', champion: 0.01, candidate: 0.015 },
];

/** Per second: requests and errors of each version. */
interface Trace {
  nc: Int32Array;
  ec: Int32Array;
  nb: Int32Array;
  eb: Int32Array;
}

/** When a rule cut the candidate's traffic (second index, inclusive), or null. */
type Rule = (t: Trace, s: Scenario) => number | null;

function makeTrace(draw: (n: number, p: number) => number, s: Scenario): Trace {
  const t = {
    nc: new Int32Array(BAKE_S),
    ec: new Int32Array(BAKE_S),
    nb: new Int32Array(BAKE_S),
    eb: new Int32Array(BAKE_S),
  };
  for (let i = 0; i < BAKE_S; i++) {
    const nc = draw(RATE, SHARE);
    t.nc[i] = nc;
    t.nb[i] = RATE - nc;
    t.ec[i] = draw(nc, s.candidate);
    t.eb[i] = draw(RATE - nc, s.champion);
  }
  return t;
}

const sum = (a: Int32Array, from: number, to: number) => {
  let x = 0;
  for (let i = Math.max(0, from); i < to; i++) x += a[i]!;
  return x;
};

function promoteRule(tolerance: number): Rule {
  return (t) => {
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
      if (testRateRatio([b], tolerance, 0.01).verdict === 'Fail') return i;
    }
    return null;
  };
}

const flagger: Rule = (t) => {
  let failed = 0;
  for (let end = 60; end <= BAKE_S; end += 60) {
    const n = sum(t.nc, end - 60, end);
    const e = sum(t.ec, end - 60, end);
    if (n > 0 && 1 - e / n < 0.99) failed++;
    if (failed >= 5) return end - 1;
  }
  return null;
};

function argo(failureLimit: number): Rule {
  return (t) => {
    let failures = 0;
    for (let end = 300; end <= BAKE_S; end += 300) {
      const n = sum(t.nc, end - 300, end);
      const e = sum(t.ec, end - 300, end);
      if (n > 0 && 1 - e / n < 0.99) failures++;
      if (failures > failureLimit) return end - 1;
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

const kayenta: Rule = (t) => {
  for (let end = 900; end <= BAKE_S; end += 900) {
    const cand: number[] = [];
    const champ: number[] = [];
    for (let m = end - 900; m < end; m += 60) {
      const nc = sum(t.nc, m, m + 60);
      const nb = sum(t.nb, m, m + 60);
      if (nc > 0) cand.push(sum(t.ec, m, m + 60) / nc);
      if (nb > 0) champ.push(sum(t.eb, m, m + 60) / nb);
    }
    const r = mannWhitney(cand, champ);
    if (r.xHigher && r.p < 0.02) return end - 1;
  }
  return null;
};

const oracle: Rule = (t, s) => {
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
};

const RULES: { name: string; rule: Rule; applies?: (s: Scenario) => boolean }[] = [
  { name: 'promote', rule: promoteRule(0) },
  { name: 'promote-tol50', rule: promoteRule(0.5) },
  { name: 'flagger', rule: flagger },
  { name: 'argo-fl0', rule: argo(0) },
  { name: 'argo-fl3', rule: argo(3) },
  { name: 'kayenta', rule: kayenta },
  { name: 'oracle-sprt', rule: oracle, applies: (s) => s.candidate !== s.champion },
];

/** 95% Wilson score interval for k successes in n. */
function wilson(k: number, n: number): [number, number] {
  const z = 1.959964;
  const p = k / n;
  const denom = 1 + (z * z) / n;
  const centre = (p + (z * z) / (2 * n)) / denom;
  const half = (z * Math.sqrt((p * (1 - p)) / n + (z * z) / (4 * n * n))) / denom;
  return [Math.max(0, centre - half), Math.min(1, centre + half)];
}

const pct = (sorted: number[], q: number): number | null =>
  sorted.length === 0 ? null : sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]!;
const round = (x: number, d = 4) => Number(x.toFixed(d));

function main(): void {
  const started = Date.now();
  const rows: Record<string, unknown>[] = [];
  const only = process.argv.includes('--scenario')
    ? process.argv[process.argv.indexOf('--scenario') + 1]
    : undefined;
  if (only !== undefined && !SCENARIOS.some((s) => s.name === only))
    throw new Error(`--scenario: one of ${SCENARIOS.map((s) => s.name).join(', ')}`);
  for (const [si, scenario] of SCENARIOS.entries()) {
    if (only !== undefined && scenario.name !== only) continue;
    const uniform = randu.factory({ seed: SEED * 1000 + si });
    const draw = binomial.factory({ prng: uniform });
    const sample = (n: number, p: number) => (n === 0 || p === 0 ? 0 : draw(n, p));
    const rules = RULES.filter((r) => !r.applies || r.applies(scenario));
    const cut = rules.map(() => ({ exposures: [] as number[], times: [] as number[] }));
    for (let run = 0; run < RUNS; run++) {
      const trace = makeTrace(sample, scenario);
      rules.forEach((r, i) => {
        const at = r.rule(trace, scenario);
        if (at !== null) {
          cut[i]!.exposures.push(sum(trace.nc, 0, at + 1));
          cut[i]!.times.push(at + 1);
        }
      });
    }
    rules.forEach((r, i) => {
      const { exposures, times } = cut[i]!;
      exposures.sort((a, b) => a - b);
      times.sort((a, b) => a - b);
      const [low, high] = wilson(exposures.length, RUNS);
      rows.push({
        rule: r.name,
        scenario: scenario.name,
        runs: RUNS,
        rollbackRate: round(exposures.length / RUNS),
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
  const out = {
    command: `npm run bench:analysis --${QUICK ? ' --quick' : ''} --runs ${RUNS} --seed ${SEED}`,
    traces: { requestsPerS: RATE, candidateShare: SHARE, bakeS: BAKE_S, seed: SEED },
    scenarios: SCENARIOS,
    results: rows,
    seconds: Math.round((Date.now() - started) / 1000),
  };
  process.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
}

main();
