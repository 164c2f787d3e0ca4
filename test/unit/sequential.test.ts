/**
 * The always-valid tests (src/analysis/sequential): tables of decisions, argument errors, and
 * calibration by simulation with fixed seeds: under the null, the rejection rate over every look
 * of a whole bake stays at or under alpha; under clear alternatives the tests decide.
 */
import binomial from '@stdlib/random-base-binomial';
import randu from '@stdlib/random-base-randu';
import {
  aucWithVariance,
  histogramOf,
  mixtureInterval,
  LATENCY_EDGES_MS,
  quantileBounds,
  testQuantileLimit,
  testQuantileRatio,
  testRateLimit,
  testRateRatio,
  testRegression,
  testSampleRatio,
} from '../../src/analysis/sequential';
import { wilsonInterval } from '../../src/analysis/shadow';
import { auc } from '../../src/analysis/stats';

const ALPHA = 0.01;

/**
 * The lower end of the 95% Wilson interval of k in n. A calibration check asserts it is at most
 * alpha: the simulated rate is consistent with alpha (a valid test can sit right at alpha, so the
 * observed rate itself may exceed it by chance), while a test that looks too often fails it.
 */
function wilsonLow(k: number, n: number): number {
  return wilsonInterval(k, n, 0.025).lower;
}

/** A seeded uniform generator and a binomial sampler drawing from it. */
function sampler(seed: number) {
  const uniform = randu.factory({ seed });
  const draw = binomial.factory({ prng: uniform });
  return {
    binomial: (n: number, p: number) => (n === 0 ? 0 : draw(n, p)),
    uniform: () => uniform(),
  };
}

describe('rate against a limit', () => {
  test.each([
    [0, 0, 0.05, 'Inconclusive'],
    [1, 3, 0.05, 'Inconclusive'],
    [100, 1000, 0.05, 'Fail'],
    [0, 2000, 0.05, 'Pass'],
    [50, 1000, 0.05, 'Inconclusive'],
    [20, 1000, 0.05, 'Pass'],
    [80, 1000, 0.05, 'Fail'],
  ] as const)('%i events in %i trials against %f: %s', (events, n, limit, verdict) => {
    expect(testRateLimit(events, n, limit, ALPHA).verdict).toBe(verdict);
  });

  test('an undecided test estimates the samples still needed; a decided one does not', () => {
    const t = testRateLimit(60, 1000, 0.05, ALPHA);
    expect(t.verdict).toBe('Inconclusive');
    expect(t.expectedMoreSamples).toBeGreaterThan(0);
    expect(testRateLimit(100, 1000, 0.05, ALPHA).expectedMoreSamples).toBeNull();
  });

  test('bad arguments are named', () => {
    expect(() => testRateLimit(5, 3, 0.05, ALPHA)).toThrow('0 <= events <= n');
    expect(() => testRateLimit(1.5, 3, 0.05, ALPHA)).toThrow('whole numbers');
    expect(() => testRateLimit(1, 3, 0, ALPHA)).toThrow('rate limit must be in (0, 1)');
    expect(() => testRateLimit(1, 3, 0.05, 1)).toThrow('alpha must be in (0, 1)');
  });

  test('calibration: a rate exactly at the limit, looked at every 5 seconds for an hour, is rarely decided either way', () => {
    const s = sampler(11);
    const runs = 300;
    let fail = 0;
    let pass = 0;
    for (let r = 0; r < runs; r++) {
      let events = 0;
      let n = 0;
      for (let t = 0; t < 720; t++) {
        n += 50;
        events += s.binomial(50, 0.05);
        const v = testRateLimit(events, n, 0.05, ALPHA).verdict;
        if (v === 'Fail') fail++;
        if (v !== 'Inconclusive') {
          if (v === 'Pass') pass++;
          break;
        }
      }
    }
    expect(wilsonLow(fail, runs)).toBeLessThanOrEqual(ALPHA);
    expect(wilsonLow(pass, runs)).toBeLessThanOrEqual(ALPHA);
  });

  test('power: twice the limit fails and half the limit passes within the hour', () => {
    const s = sampler(12);
    for (const [p, want] of [
      [0.1, 'Fail'],
      [0.025, 'Pass'],
    ] as const) {
      let decided = 0;
      for (let r = 0; r < 100; r++) {
        let events = 0;
        for (let t = 1; t <= 3600; t++) {
          events += s.binomial(10, p);
          const v = testRateLimit(events, t * 10, 0.05, ALPHA).verdict;
          if (v !== 'Inconclusive') {
            if (v === want) decided++;
            break;
          }
        }
      }
      expect(decided).toBe(100);
    }
  });
});

/** Simulates a 5% canary at 200 rps for an hour, looked at every `every` seconds. */
function ratioRun(
  s: ReturnType<typeof sampler>,
  candidateRate: number,
  championRate: number,
  tolerance: number,
  every = 1,
): { verdict: string; exposure: number } {
  const b = { candidateRequests: 0, candidateEvents: 0, championRequests: 0, championEvents: 0 };
  for (let t = 0; t < 3600; t += every) {
    b.candidateRequests += 10 * every;
    b.championRequests += 190 * every;
    b.candidateEvents += s.binomial(10 * every, candidateRate);
    b.championEvents += s.binomial(190 * every, championRate);
    // One split all along, so one bucket of running counts is the same test as per-second buckets.
    const v = testRateRatio([b], tolerance, ALPHA).verdict;
    if (v !== 'Inconclusive') return { verdict: v, exposure: b.candidateRequests };
  }
  return { verdict: 'Inconclusive', exposure: b.candidateRequests };
}

describe('rate against the champion with a tolerance', () => {
  test('decisions and evidence', () => {
    const worse = testRateRatio(
      [{ candidateRequests: 2000, candidateEvents: 60, championRequests: 38000, championEvents: 380 }],
      0,
      ALPHA,
    );
    expect(worse).toMatchObject({ verdict: 'Fail', candidateRate: 0.03, championRate: 0.01, boundary: 1 });
    expect(worse.ratio).toBeCloseTo(3);
    const same = testRateRatio(
      [{ candidateRequests: 2000, candidateEvents: 20, championRequests: 38000, championEvents: 380 }],
      0.5,
      ALPHA,
    );
    expect(same.verdict).toBe('Inconclusive');
    expect(same.expectedMoreSamples).toBeGreaterThan(0);
    expect(testRateRatio([], 0, ALPHA)).toMatchObject({ verdict: 'Inconclusive', ratio: null });
  });

  test('buckets with different splits each use their own split', () => {
    // The candidate's share of errors matches its share of traffic in every bucket: no evidence of
    // a higher rate, although pooled counts would show 50 of 100 errors on 1/3 of the traffic.
    const buckets = [
      { candidateRequests: 1000, candidateEvents: 10, championRequests: 9000, championEvents: 90 },
      { candidateRequests: 5000, candidateEvents: 50, championRequests: 5000, championEvents: 50 },
    ];
    const t = testRateRatio(buckets, 0, ALPHA);
    expect(t.logEvidenceAbove).toBeLessThan(0);
    expect(t.verdict).not.toBe('Fail');
  });

  test('bad buckets are named', () => {
    expect(() =>
      testRateRatio(
        [{ candidateRequests: 1, candidateEvents: 2, championRequests: 1, championEvents: 0 }],
        0,
        ALPHA,
      ),
    ).toThrow('bucket 0: more events than requests');
    expect(() =>
      testRateRatio(
        [{ candidateRequests: -1, candidateEvents: 0, championRequests: 1, championEvents: 0 }],
        0,
        ALPHA,
      ),
    ).toThrow('bucket 0: candidateRequests must be a whole number >= 0');
    expect(() => testRateRatio([], -0.1, ALPHA)).toThrow('tolerance must be >= 0');
  });

  test('calibration: A/A at 1%, looked at every 5 seconds for an hour, falsely fails in at most alpha of runs', () => {
    const s = sampler(21);
    const runs = 300;
    let fails = 0;
    for (let r = 0; r < runs; r++) if (ratioRun(s, 0.01, 0.01, 0, 5).verdict === 'Fail') fails++;
    expect(wilsonLow(fails, runs)).toBeLessThanOrEqual(ALPHA);
  });

  test('calibration: a candidate exactly at the tolerance (1% -> 1.5%, tolerance 0.5) falsely fails in at most alpha of runs', () => {
    const s = sampler(22);
    const runs = 300;
    let fails = 0;
    for (let r = 0; r < runs; r++) if (ratioRun(s, 0.015, 0.01, 0.5, 5).verdict === 'Fail') fails++;
    expect(wilsonLow(fails, runs)).toBeLessThanOrEqual(ALPHA);
  });

  test('power: 1% -> 2% fails within the hour in every run, with far less exposure than a per-look test needed', () => {
    const s = sampler(23);
    const exposures: number[] = [];
    for (let r = 0; r < 100; r++) {
      const { verdict, exposure } = ratioRun(s, 0.02, 0.01, 0);
      expect(verdict).toBe('Fail');
      exposures.push(exposure);
    }
    exposures.sort((a, b) => a - b);
    // The issue measured 3,500-4,200 requests for the per-look test; Wald's SPRT knowing both rates needs about 1,200.
    expect(exposures[50]).toBeLessThan(3000);
  });
});

describe('sample ratio mismatch', () => {
  const run = (s: ReturnType<typeof sampler>, shareFactor: number) => {
    const segments = [0.05, 0.2, 0.5].map((w) => ({
      expectedShare: w,
      candidateRequests: 0,
      championRequests: 0,
    }));
    for (const seg of segments) {
      const share =
        (shareFactor * seg.expectedShare) / (shareFactor * seg.expectedShare + 1 - seg.expectedShare);
      // 20 minutes per step at 200 requests/s, looked at every 5 seconds.
      for (let t = 0; t < 240; t++) {
        const c = s.binomial(1000, share);
        seg.candidateRequests += c;
        seg.championRequests += 1000 - c;
        if (testSampleRatio(segments, 0.001).verdict === 'Fail') return true;
      }
    }
    return false;
  };

  test('calibration: splits that match the weights through three canary steps are not flagged', () => {
    const s = sampler(31);
    let flagged = 0;
    for (let r = 0; r < 200; r++) if (run(s, 1)) flagged++;
    expect(wilsonLow(flagged, 200)).toBeLessThanOrEqual(0.001);
  });

  test('a candidate losing a tenth of its requests is flagged, with expected and observed counts', () => {
    const s = sampler(32);
    let flagged = 0;
    for (let r = 0; r < 50; r++) if (run(s, 0.9)) flagged++;
    expect(flagged).toBe(50);
    const t = testSampleRatio(
      [{ expectedShare: 0.05, candidateRequests: 800, championRequests: 19200 }],
      0.001,
    );
    expect(t).toMatchObject({
      verdict: 'Fail',
      expectedCandidate: 1000,
      observedCandidate: 800,
      total: 20000,
    });
  });

  test('bad segments are named', () => {
    expect(() =>
      testSampleRatio([{ expectedShare: 1, candidateRequests: 1, championRequests: 0 }], 0.001),
    ).toThrow('segment 0: expected share must be in (0, 1)');
  });
});

describe('quantiles from histograms', () => {
  // Exponential latencies with mean 10 ms: p99 = 10 ln(100) = 46.05 ms.
  const TRUE_P99 = 10 * Math.log(100);
  const latencies = (s: ReturnType<typeof sampler>, n: number, scale = 10) =>
    Array.from({ length: n }, () => -scale * Math.log(1 - s.uniform()));

  test('histograms count into 5% buckets', () => {
    const h = histogramOf([0.05, 1, 1.04, 200_000]);
    expect(h.overflow).toBe(1);
    expect(h.counts.reduce((a, b) => a + b, 0)).toBe(3);
    expect(LATENCY_EDGES_MS[0]).toBe(0.1);
  });

  test('calibration: the bounds hold at every look in at least 1 - alpha of runs', () => {
    const s = sampler(41);
    const runs = 200;
    let missed = 0;
    for (let r = 0; r < runs; r++) {
      const seen: number[] = [];
      for (let look = 0; look < 20; look++) {
        seen.push(...latencies(s, 250));
        const b = quantileBounds(histogramOf(seen), 0.99, ALPHA);
        if (b.lower >= TRUE_P99 || (b.upper !== null && b.upper < TRUE_P99)) {
          missed++;
          break;
        }
      }
    }
    // Each side holds at alpha: both together at 2 alpha.
    expect(wilsonLow(missed, runs)).toBeLessThanOrEqual(2 * ALPHA);
  });

  test('the bounds narrow around the true p99 as requests accumulate', () => {
    const b = quantileBounds(histogramOf(latencies(sampler(42), 50_000)), 0.99, ALPHA);
    expect(b.lower).toBeLessThan(TRUE_P99);
    expect(b.upper).toBeGreaterThanOrEqual(TRUE_P99);
    expect(b.upper! / b.lower).toBeLessThan(1.3);
  });

  test('limits and ratios: a 40% slower p99 fails a 20% tolerance; the same latency passes it', () => {
    const s = sampler(43);
    const champion = histogramOf(latencies(s, 40_000));
    const slower = histogramOf(latencies(s, 40_000, 14));
    const same = histogramOf(latencies(s, 40_000));
    expect(testQuantileRatio(slower, champion, 0.99, 0.2, ALPHA).verdict).toBe('Fail');
    expect(testQuantileRatio(same, champion, 0.99, 0.2, ALPHA).verdict).toBe('Pass');
    expect(testQuantileLimit(same, 0.99, 100, ALPHA).verdict).toBe('Pass');
    expect(testQuantileLimit(same, 0.99, 20, ALPHA).verdict).toBe('Fail');
    expect(testQuantileLimit(histogramOf([]), 0.99, 20, ALPHA).verdict).toBe('Inconclusive');
  });
});

describe('quality differences on labelled rows', () => {
  // Scores: N(0, 1) for negatives, N(delta, 1) for positives: AUC = Φ(delta / √2).
  const rows = (u: () => number, n: number, delta: number) => {
    const gauss = () => Math.sqrt(-2 * Math.log(1 - u())) * Math.cos(2 * Math.PI * u());
    const labels = Array.from({ length: n }, () => (u() < 0.3 ? 1 : 0));
    return { labels, scores: labels.map((l) => l * delta + gauss()) };
  };

  test('AUC with DeLong variance matches the plain AUC; a perfect ranking has no variance', () => {
    const { labels, scores } = rows(sampler(51).uniform, 2000, 1.466);
    const est = aucWithVariance(scores, labels)!;
    expect(est.auc).toBeCloseTo(auc(scores, labels), 10);
    expect(est.auc).toBeGreaterThan(0.82);
    expect(est.auc).toBeLessThan(0.88);
    expect(est.variance).toBeGreaterThan(0);
    expect(aucWithVariance([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])).toMatchObject({ auc: 1, variance: 0 });
    expect(aucWithVariance([0.1, 0.2], [0, 0])).toBeNull();
  });

  test('calibration: equal models, looked at every 500 rows, the interval covers 0 at every look', () => {
    const s = sampler(52);
    const runs = 200;
    let missed = 0;
    for (let r = 0; r < runs; r++) {
      const cand = rows(s.uniform, 5000, 1.466);
      const champ = rows(s.uniform, 5000, 1.466);
      for (let k = 500; k <= 5000; k += 500) {
        const a = aucWithVariance(cand.scores.slice(0, k), cand.labels.slice(0, k))!;
        const b = aucWithVariance(champ.scores.slice(0, k), champ.labels.slice(0, k))!;
        const i = mixtureInterval(a.auc - b.auc, a.variance + b.variance, ALPHA, 0.03);
        if (i.lower > 0 || i.upper < 0) {
          missed++;
          break;
        }
      }
    }
    expect(wilsonLow(missed, runs)).toBeLessThanOrEqual(ALPHA);
  });

  test('a 3-point AUC drop fails a zero tolerance; equal models pass a 5-point one', () => {
    const s = sampler(53);
    const champ = rows(s.uniform, 20_000, 1.466); // AUC about 0.85
    const worse = rows(s.uniform, 20_000, 1.294); // about 0.82
    const same = rows(s.uniform, 20_000, 1.466);
    const b = aucWithVariance(champ.scores, champ.labels)!;
    const w = aucWithVariance(worse.scores, worse.labels)!;
    const e = aucWithVariance(same.scores, same.labels)!;
    expect(testRegression(w.auc - b.auc, w.variance + b.variance, 0, ALPHA, 0.03).verdict).toBe('Fail');
    expect(testRegression(e.auc - b.auc, e.variance + b.variance, 0.05, ALPHA, 0.03).verdict).toBe('Pass');
    expect(() => testRegression(0, 1, -1, ALPHA, 0.03)).toThrow('maxRegression must be >= 0');
  });
});
