/** The pure assessments (guardrail, gate, shadow, labels) and the statistics behind them. */
import {
  accuracy,
  assessGate,
  assessShadow,
  auc,
  combineVerdicts,
  decisionClass,
  logLoss,
  normalCdf,
  psi,
  quantile,
  wilsonInterval,
  type Measurement,
  type ShadowComparison,
  type Verdict,
} from '../../src/analysis';
import { compareScores } from '../../src/analysis/shadow-compare';
import type { Gate, Shadow } from '../../src/plan/schema';

// ---- builders ----

/** A successful measurement: `value` over `samples` observations (plus `events` for rates). */
const ok = (value: number | null, samples: number, extra: Partial<Measurement> = {}): Measurement => ({
  metric: 'm',
  version: 'v',
  value,
  samples,
  phase: 'Ok',
  ...extra,
});
const failed = (error: string): Measurement => ({
  metric: 'm',
  version: 'v',
  value: null,
  samples: 0,
  phase: 'Error',
  error,
});

const gate = (rule: Partial<Gate>): Gate => ({ dataset: 'holdout', ...rule });
const shadow = (rule: Partial<Shadow> = {}): Shadow => ({
  duration: '10m',
  sampleRate: 1,
  minPairs: 100,
  maxDisagreement: 0.05,
  maxScorePsi: 0.2,
  alpha: 0.05,
  ...rule,
});
/** A comparison with Wilson bounds for the disagreement and PSI bounds of +-0.02. */
const comparison = (
  pairs: number,
  disagreement: number | null,
  scorePsi: number | null,
): ShadowComparison => ({
  pairs,
  disagreement,
  scorePsi,
  disagreementInterval:
    disagreement === null ? null : wilsonInterval(Math.round(disagreement * pairs), pairs, 0.05),
  scorePsiInterval:
    scorePsi === null ? null : { lower: Math.max(0, scorePsi - 0.02), upper: scorePsi + 0.02 },
  alpha: 0.05,
  thresholds: [0.7, 0.95],
});

// ---- gates ----

const gateCases: [string, Gate, Measurement, Measurement | undefined, Verdict, string][] = [
  [
    'auc above min',
    gate({ metric: 'auc', min: 0.8 }),
    ok(0.85, 5000),
    undefined,
    'Pass',
    'auc 0.85 within limits',
  ],
  [
    'auc below min',
    gate({ metric: 'auc', min: 0.8 }),
    ok(0.75, 5000),
    undefined,
    'Fail',
    'auc 0.75 < min 0.8',
  ],
  [
    'latency above max',
    gate({ metric: 'latency_p99_ms', max: 50 }),
    ok(62, 2000),
    undefined,
    'Fail',
    'latency_p99_ms 62 > max 50',
  ],
  [
    'auc regresses too far',
    gate({ metric: 'auc', maxRegressionVsChampion: 0.01 }),
    ok(0.85, 5000),
    ok(0.87, 5000),
    'Fail',
    'auc 0.85 regresses 0.02 vs champion 0.87 (max 0.01)',
  ],
  [
    'auc regresses a little',
    gate({ metric: 'auc', maxRegressionVsChampion: 0.01 }),
    ok(0.865, 5000),
    ok(0.87, 5000),
    'Pass',
    'auc 0.865 (champion 0.87) within limits',
  ],
  [
    'auc improves',
    gate({ metric: 'auc', maxRegressionVsChampion: 0.01 }),
    ok(0.9, 5000),
    ok(0.87, 5000),
    'Pass',
    'within limits',
  ],
  [
    'log_loss rises too far',
    gate({ metric: 'log_loss', maxRegressionVsChampion: 0.02 }),
    ok(0.4, 5000),
    ok(0.35, 5000),
    'Fail',
    'log_loss 0.4 regresses 0.05 vs champion 0.35',
  ],
  [
    'log_loss falls (lower is better)',
    gate({ metric: 'log_loss', maxRegressionVsChampion: 0.02 }),
    ok(0.3, 5000),
    ok(0.35, 5000),
    'Pass',
    'log_loss 0.3 (champion 0.35) within limits',
  ],
  [
    'regression limit without champion',
    gate({ metric: 'auc', maxRegressionVsChampion: 0.01 }),
    ok(0.85, 5000),
    undefined,
    'NoData',
    'no champion auc to compare with',
  ],
  [
    'regression limit, champion failed',
    gate({ metric: 'auc', maxRegressionVsChampion: 0.01 }),
    ok(0.85, 5000),
    failed('no model'),
    'NoData',
    'no champion auc',
  ],
  [
    'min breach wins over the champion comparison',
    gate({ metric: 'auc', min: 0.9, maxRegressionVsChampion: 0.01 }),
    ok(0.85, 5000),
    undefined,
    'Fail',
    'auc 0.85 < min 0.9',
  ],
  [
    'feature_schema compatible',
    gate({ check: 'feature_schema' }),
    ok(1, 42),
    undefined,
    'Pass',
    'feature_schema compatible',
  ],
  [
    'feature_schema incompatible',
    gate({ check: 'feature_schema' }),
    ok(0, 42, { detail: 'missing features: merchant_risk' }),
    undefined,
    'Fail',
    'feature_schema incompatible: missing features: merchant_risk',
  ],
  ['no value', gate({ metric: 'auc', min: 0.8 }), ok(null, 0), undefined, 'NoData', 'no value for auc'],
  [
    'measuring failed',
    gate({ metric: 'auc', min: 0.8 }),
    failed('holdout not found'),
    undefined,
    'Error',
    'measuring failed: holdout not found',
  ],
];

test.each(gateCases)('gate: %s', (_name, rule, candidate, champion, verdict, evidence) => {
  const result = assessGate(rule, candidate, champion);
  expect(result.verdict).toBe(verdict);
  expect(result.evidence).toContain(evidence);
  expect(result.subject).toBe(`gate ${rule.metric ?? rule.check}`);
});

test('gate: a regression of exactly maxRegressionVsChampion passes', () => {
  expect(
    assessGate(gate({ metric: 'auc', maxRegressionVsChampion: 0.01 }), ok(0.86, 5000), ok(0.87, 5000))
      .verdict,
  ).toBe('Pass');
});

// ---- shadow ----

test.each([
  [0.69, 0],
  [0.7, 1],
  [0.9, 1],
  [0.95, 2],
  [1, 2],
])('decisionClass(%d) at thresholds 0.7/0.95 is %d', (score, cls) => {
  expect(decisionClass(score, [0.7, 0.95])).toBe(cls);
});

test('compareScores sorts the thresholds and counts differing decisions', () => {
  const pairs = [
    { champion: 0.1, candidate: 0.2 },
    { champion: 0.75, candidate: 0.8 },
    { champion: 0.8, candidate: 0.96 },
    { champion: 0.96, candidate: 0.99 },
  ];
  const result = compareScores(pairs, [0.95, 0.7]);
  expect(result).toMatchObject({ pairs: 4, disagreement: 0.25, thresholds: [0.7, 0.95] });
  expect(result.scorePsi).toBeGreaterThan(0);
});

test('compareScores of no pairs has no disagreement or PSI', () => {
  expect(compareScores([], [0.5])).toEqual({
    pairs: 0,
    disagreement: null,
    scorePsi: null,
    disagreementInterval: null,
    scorePsiInterval: null,
    alpha: 0.05,
    thresholds: [0.5],
  });
});

const shadowCases: [string, Shadow, ShadowComparison, Verdict, string][] = [
  ['no pairs', shadow(), comparison(0, null, null), 'NoData', 'no mirrored request pairs to compare'],
  ['too few pairs', shadow(), comparison(50, 0, 0), 'Inconclusive', 'only 50 of 100 required pairs'],
  [
    'agreeing, stable scores',
    shadow(),
    comparison(500, 0.01, 0.05),
    'Pass',
    'disagreement 0.01 [0.004876, 0.0204] at thresholds 0.7/0.95, score PSI 0.05 [0.03, 0.07] (95% bounds), 500 pairs',
  ],
  [
    'disagreement significantly above max',
    shadow(),
    comparison(500, 0.08, 0.05),
    'Fail',
    'disagreement significantly above max 0.05',
  ],
  [
    'disagreement above max, but not significantly',
    shadow(),
    comparison(500, 0.06, 0.05),
    'Inconclusive',
    'disagreement not shown to be within max 0.05',
  ],
  [
    'disagreement below max, but not significantly',
    shadow(),
    comparison(150, 0.03, 0.05),
    'Inconclusive',
    'disagreement not shown to be within max 0.05',
  ],
  [
    'PSI significantly above max',
    shadow(),
    comparison(500, 0.01, 0.35),
    'Fail',
    'PSI significantly above max 0.2',
  ],
  ['PSI not limited', shadow({ maxScorePsi: undefined }), comparison(500, 0.01, 5), 'Pass', 'score PSI 5'],
  [
    'disagreement not limited',
    shadow({ maxDisagreement: undefined }),
    comparison(500, 0.5, 0.1),
    'Pass',
    'disagreement 0.5',
  ],
];

test.each(shadowCases)('shadow: %s', (_name, rule, result, verdict, evidence) => {
  const assessment = assessShadow(rule, result);
  expect(assessment.verdict).toBe(verdict);
  expect(assessment.evidence).toContain(evidence);
  expect(assessment.samples).toBe(result.pairs);
});

test('shadow end to end: an identical candidate passes, a shifted one fails', () => {
  const champion = Array.from({ length: 200 }, (_, i) => i / 200);
  const same = compareScores(
    champion.map((s) => ({ champion: s, candidate: s })),
    [0.7, 0.95],
  );
  expect(same).toMatchObject({ pairs: 200, disagreement: 0, scorePsi: 0 });
  expect(assessShadow(shadow(), same).verdict).toBe('Pass');

  const shifted = compareScores(
    champion.map((s) => ({ champion: s, candidate: Math.min(0.999, s + 0.3) })),
    [0.7, 0.95],
  );
  expect(shifted.disagreement).toBeGreaterThan(0.05);
  expect(shifted.scorePsi).toBeGreaterThan(0.2);
  expect(assessShadow(shadow(), shifted)).toMatchObject({ verdict: 'Fail', subject: 'shadow', samples: 200 });
});

// ---- verdicts and statistics ----

test.each<[Verdict[], Verdict]>([
  [[], 'Pass'],
  [['Pass', 'Pass'], 'Pass'],
  [['Pass', 'Inconclusive'], 'Inconclusive'],
  [['Inconclusive', 'NoData'], 'NoData'],
  [['NoData', 'Error', 'Inconclusive'], 'Error'],
  [['Error', 'Fail', 'Pass'], 'Fail'],
])('combineVerdicts(%j) = %s', (verdicts, expected) => {
  expect(combineVerdicts(verdicts)).toBe(expected);
});

test('normalCdf', () => {
  expect(normalCdf(0)).toBeCloseTo(0.5, 6);
  expect(normalCdf(1.96)).toBeCloseTo(0.975, 4);
  expect(normalCdf(-1.96)).toBeCloseTo(0.025, 4);
  expect(normalCdf(-8)).toBeCloseTo(0, 6);
});

test('auc', () => {
  expect(auc([0.1, 0.2, 0.8, 0.9], [0, 0, 1, 1])).toBe(1);
  expect(auc([0.1, 0.2, 0.8, 0.9], [1, 1, 0, 0])).toBe(0);
  expect(auc([0.5, 0.5, 0.5, 0.5], [0, 1, 0, 1])).toBe(0.5);
  expect(auc([0.1, 0.4, 0.35, 0.8], [0, 0, 1, 1])).toBe(0.75);
  expect(auc([0.1, 0.9], [1, 1])).toBeNaN();
});

test('psi', () => {
  const scores = Array.from({ length: 100 }, (_, i) => i / 200);
  expect(psi(scores, scores)).toBeCloseTo(0, 10);
  expect(
    psi(
      scores,
      scores.map((s) => s + 0.5),
    ),
  ).toBeGreaterThan(0.2);
  expect(psi(scores, [])).toBeNaN();
});

test('quantile', () => {
  expect(quantile([4, 1, 3, 2], 0.5)).toBe(2.5);
  expect(quantile([1, 2, 3, 4, 5], 0.9)).toBeCloseTo(4.6, 10);
  expect(quantile([7, 3], 0)).toBe(3);
  expect(quantile([7, 3], 1)).toBe(7);
  expect(quantile([], 0.5)).toBeNaN();
});

test('logLoss and accuracy', () => {
  expect(logLoss([0.5, 0.5], [0, 1])).toBeCloseTo(Math.LN2, 10);
  expect(logLoss([1, 0], [1, 0])).toBeCloseTo(0, 10);
  expect(logLoss([0, 1], [1, 0])).toBeGreaterThan(30); // clipped, so finite
  expect(accuracy([0.2, 0.7, 0.5, 0.4], [0, 1, 0, 1])).toBe(0.5);
  expect(accuracy([0.2, 0.7], [0, 1], 0.8)).toBe(0.5);
});
