/**
 * The live checks, table-tested: guardrails over traffic splits, the sample-ratio check, delayed
 * labels on matured predictions, the policy that says what a round means, and the checks of what
 * metrics sources answer. Calibration of the tests underneath is in sequential.test.ts.
 */
import {
  addToSparse,
  assessGuardrail,
  assessSampleRatio,
  type LiveCounts,
  type SparseHistogram,
} from '../../src/analysis/guardrail';
import { assessLabels, compareLabels } from '../../src/analysis/labels';
import { nextAction, type PolicyInput } from '../../src/analysis/policy';
import { LATENCY_EDGES_MS, testRateRatio } from '../../src/analysis/sequential';
import type { Assessment, Verdict } from '../../src/analysis/types';
import { InvalidInputError } from '../../src/common/errors';
import { planSchema, type Guardrail, type Watch } from '../../src/plan/schema';
import { checkCounts, checkLabelled } from '../../src/providers/checks';
import { seededRandom } from '../../src/providers/inprocess/random';
import { latencyBucket } from '../../src/serving/gateway/prediction-log/types';
import { labelledRows } from '../helpers/labelled-rows';

// ---- builders ----

/** A histogram of `n` requests all at `ms`. */
const at = (ms: number, n: number): SparseHistogram => {
  const h: SparseHistogram = { bins: [], maxMs: null };
  const counts = new Array<number>(LATENCY_EDGES_MS.length + 1).fill(0);
  counts[latencyBucket(ms)] = n;
  addToSparse(h, counts, n > 0 ? ms : null);
  return h;
};

/** Live counts of splits [percent, candidate [requests, errors], champion [requests, errors]]. */
const live = (
  splits: [number, [number, number], [number, number]][],
  latency: { candidate?: SparseHistogram; champion?: SparseHistogram } = {},
): LiveCounts => ({
  phase: 'Ok',
  splits: splits.map(([percent, [cr, ce], [br, be]]) => ({
    percent,
    candidate: { requests: cr, errors: ce, units: cr },
    champion: { requests: br, errors: be, units: br },
  })),
  latency: {
    candidate: latency.candidate ?? { bins: [], maxMs: null },
    champion: latency.champion ?? { bins: [], maxMs: null },
  },
});

const rule = (r: Partial<Guardrail> & Pick<Guardrail, 'metric'>): Guardrail => ({
  alpha: 0.05,
  minSamples: 100,
  ...r,
});

// ---- guardrails ----

const guardrailCases: [string, Guardrail, LiveCounts, Verdict, string][] = [
  [
    'error rate far below max',
    rule({ metric: 'error_rate', max: 0.05 }),
    live([[10, [2000, 20], [18000, 180]]]),
    'Pass',
    'error_rate 0.01 (20/2000) vs max 0.05: significantly within',
  ],
  [
    'error rate far above max',
    rule({ metric: 'error_rate', max: 0.05 }),
    live([[10, [2000, 200], [18000, 180]]]),
    'Fail',
    'vs max 0.05: significantly worse',
  ],
  [
    'error rate at max',
    rule({ metric: 'error_rate', max: 0.05 }),
    live([[10, [200, 10], [1800, 18]]]),
    'Inconclusive',
    'not yet decided',
  ],
  [
    'within max but below minSamples',
    rule({ metric: 'error_rate', max: 0.05, minSamples: 5000 }),
    live([[10, [2000, 20], [18000, 180]]]),
    'Inconclusive',
    'only 2000 of 5000 required requests',
  ],
  [
    'error rate significantly below a minimum fails',
    rule({ metric: 'error_rate', min: 0.05 }),
    live([[10, [2000, 20], [18000, 180]]]),
    'Fail',
    'vs min 0.05: significantly worse',
  ],
  [
    'three times the champion, tolerance 50%',
    rule({ metric: 'error_rate', relativeIncrease: 0.5 }),
    live([[5, [1000, 60], [19000, 380]]]),
    'Fail',
    'limit x1.5: significantly worse',
  ],
  [
    'half the champion, tolerance 50%',
    rule({ metric: 'error_rate', relativeIncrease: 0.5 }),
    live([[5, [5000, 50], [95000, 1900]]]),
    'Pass',
    'limit x1.5: significantly within',
  ],
  [
    'significantly within the limit while the champion comparison is undecided',
    rule({ metric: 'error_rate', max: 0.05, relativeIncrease: 0.5 }),
    live([[10, [2000, 20], [18000, 180]]]),
    'Pass',
    'vs max 0.05: significantly within',
  ],
  [
    'within the limit but significantly worse than the champion',
    rule({ metric: 'error_rate', max: 0.05, relativeIncrease: 0.5 }),
    live([[10, [4000, 120], [36000, 360]]]),
    'Fail',
    'limit x1.5: significantly worse',
  ],
  [
    'no errors on either side: nothing to compare',
    rule({ metric: 'error_rate', relativeIncrease: 0.5 }),
    live([[5, [5000, 0], [95000, 0]]]),
    'Inconclusive',
    'not yet decided',
  ],
  [
    'splits are tested together: the regression shows across the steps',
    rule({ metric: 'error_rate', relativeIncrease: 0 }),
    live([
      [5, [500, 15], [9500, 95]],
      [25, [2500, 75], [7500, 75]],
      [50, [5000, 150], [5000, 50]],
    ]),
    'Fail',
    'limit x1: significantly worse',
  ],
  [
    'the candidate has served nothing',
    rule({ metric: 'error_rate', max: 0.05 }),
    live([[10, [0, 0], [1000, 1]]]),
    'NoData',
    'no requests served by the candidate yet',
  ],
  [
    'measuring failed',
    rule({ metric: 'error_rate', max: 0.05 }),
    { ...live([]), phase: 'Error', error: 'gateway down' },
    'Error',
    'measuring failed: gateway down',
  ],
  [
    'p99 latency well within max',
    rule({ metric: 'latency_p99_ms', max: 50 }),
    live([[10, [2000, 0], [18000, 0]]], { candidate: at(10, 2000) }),
    'Pass',
    'vs max 50 ms: significantly within',
  ],
  [
    'p99 latency above max',
    rule({ metric: 'latency_p99_ms', max: 50 }),
    live([[10, [2000, 0], [18000, 0]]], { candidate: at(100, 2000) }),
    'Fail',
    'vs max 50 ms: significantly worse',
  ],
  [
    'p99 from too few requests to say',
    rule({ metric: 'latency_p99_ms', max: 50 }),
    live([[10, [50, 0], [450, 0]]], { candidate: at(10, 50) }),
    'Inconclusive',
    'not yet decided',
  ],
  [
    'p99 twice the champion, tolerance 20%',
    rule({ metric: 'latency_p99_ms', relativeIncrease: 0.2 }),
    live([[10, [2000, 0], [18000, 0]]], { candidate: at(20, 2000), champion: at(10, 18000) }),
    'Fail',
    'limit x1.2: significantly worse',
  ],
  [
    'p99 the same as the champion, tolerance 20%',
    rule({ metric: 'latency_p99_ms', relativeIncrease: 0.2 }),
    live([[10, [2000, 0], [18000, 0]]], { candidate: at(10, 2000), champion: at(10, 18000) }),
    'Pass',
    'limit x1.2: significantly within',
  ],
];

test.each(guardrailCases)('guardrail: %s', (_name, r, counts, verdict, evidence) => {
  const a = assessGuardrail(r, counts);
  expect(a.verdict).toBe(verdict);
  expect(a.evidence).toContain(evidence);
  expect(a.subject).toBe(`guardrail ${r.metric}`);
});

test('a guardrail verdict carries its test: method, alpha, n per version, statistic, threshold', () => {
  const a = assessGuardrail(
    rule({ metric: 'error_rate', max: 0.05, relativeIncrease: 0.5, alpha: 0.02 }),
    live([[10, [1000, 30], [9000, 90]]]),
  );
  expect(a.verdict).toBe('Inconclusive');
  expect(a.test).toMatchObject({
    alpha: 0.01, // two comparisons share alpha
    nCandidate: 1000,
    nChampion: 9000,
    statistic: expect.stringContaining('log e-value') as string,
    threshold: Math.log(100),
  });
  expect(a.test!.method).toMatch(/mixture SPRT/);
  expect(a.test!.expectedMoreSamples).toBeGreaterThan(0);
  expect(a.candidate).toBeCloseTo(0.03);
  expect(a.champion).toBeCloseTo(0.01);
});

// ---- sample ratio ----

test.each<[string, LiveCounts, Verdict, string]>([
  [
    'the split matches the weights',
    live([[10, [1000, 0], [9000, 0]]]),
    'Pass',
    'candidate received 1000 of 10000 assignment units, 1000 expected from the weights: no mismatch detected',
  ],
  [
    'the candidate gets 6% of a 10% route',
    live([[10, [600, 0], [9400, 0]]]),
    'Fail',
    'candidate received 600 of 10000 assignment units, 1000 expected from the weights: traffic does not match the route',
  ],
  [
    'splits at 100% carry no ratio',
    live([
      [10, [1000, 0], [9000, 0]],
      [100, [5000, 0], [0, 0]],
    ]),
    'Pass',
    'candidate received 1000 of 10000',
  ],
])('sample ratio: %s', (_name, counts, verdict, evidence) => {
  const a = assessSampleRatio(counts, 0.001);
  expect(a.verdict).toBe(verdict);
  expect(a.evidence).toContain(evidence);
});

test('a mismatch names expected and observed counts', () => {
  expect(assessSampleRatio(live([[10, [600, 0], [9400, 0]]]), 0.001).test).toMatchObject({
    expected: 1000,
    observed: 600,
    alpha: 0.001,
  });
});

// ---- delayed labels ----

const labelRule = (r: Partial<NonNullable<Watch['labels']>> = {}): NonNullable<Watch['labels']> => ({
  metric: 'auc',
  maxRegression: 0.02,
  minLabels: 200,
  alpha: 0.05,
  tau: 0.03,
  maturity: 0.9,
  passWhen: 'excluded',
  ...r,
});

const rows = labelledRows;

test('only matured predictions count: older than the observed delay quantile', () => {
  const c = compareLabels(
    { version: '2', rows: rows(1000, 2, 1, 1000) },
    { version: '1', rows: rows(1000, 2, 2, 1000) },
    9000,
    0.9,
  );
  expect(c.delayMs).toBe(1000);
  expect(c.maturedBeforeMs).toBe(8000);
  // Made every 10 ms from 0: those up to 8000 ms are matured (and labelled by 9000).
  expect(c.candidate.rows).toBe(801);
  expect(c.champion.rows).toBe(801);
});

test.each<[string, NonNullable<Watch['labels']>, number, number, number, Verdict, string]>([
  ['a large drop', labelRule(), 3000, 0.5, 3, 'Fail', 'regression beyond 0.02 is significant'],
  ['the same model', labelRule({ maxRegression: 0.05 }), 3000, 3, 3, 'Pass', 'is excluded'],
  ['too few labels', labelRule(), 100, 0.5, 3, 'Inconclusive', '200 each required'],
  [
    'log loss: a worse model has the higher loss',
    labelRule({ metric: 'log_loss', maxRegression: 0.01 }),
    3000,
    0.3,
    3,
    'Fail',
    'regression beyond 0.01 is significant',
  ],
])('labels: %s', (_name, r, n, candidateSignal, championSignal, verdict, evidence) => {
  const c = compareLabels(
    { version: '2', rows: rows(n, candidateSignal, 11) },
    { version: '1', rows: rows(n, championSignal, 12) },
    n * 10 + 10_000,
    0.9,
  );
  const a = assessLabels(r, c);
  expect(a.verdict).toBe(verdict);
  expect(a.evidence).toContain(evidence);
});

test('labels: none yet is NoData; a failed read is Error', () => {
  const empty = compareLabels({ version: '2', rows: [] }, { version: '1', rows: [] }, 1000, 0.9);
  expect(assessLabels(labelRule(), empty).verdict).toBe('NoData');
  expect(assessLabels(labelRule(), { ...empty, phase: 'Error', error: 'down' })).toMatchObject({
    verdict: 'Error',
    evidence: 'measuring failed: down',
  });
});

// ---- the policy ----

const analysis = planSchema.parse({ canary: { steps: [{ traffic: 100 }] } }).analysis;
const verdict = (subject: string, v: Verdict): Assessment => ({
  subject,
  verdict: v,
  evidence: `${subject} ${v}`,
});
const base: PolicyInput = {
  moment: 'look',
  what: 'step 1 bake',
  trafficPercent: 10,
  srm: verdict('sample ratio', 'Pass'),
  assessments: [verdict('guardrail error_rate', 'Pass')],
  consecutiveErrors: {},
  extensions: 0,
  srmAccepted: false,
  analysis,
};
const srmPause = { ...analysis, srm: { alpha: 0.001, onMismatch: 'pause' as const } };

test.each<[string, Partial<PolicyInput>, string, string]>([
  ['a look with all Pass', {}, 'continue', ''],
  [
    'a look with an Inconclusive guardrail',
    { assessments: [verdict('guardrail error_rate', 'Inconclusive')] },
    'continue',
    '',
  ],
  [
    'a mismatch rolls back by default, before any other verdict',
    { srm: verdict('sample ratio', 'Fail'), assessments: [verdict('guardrail error_rate', 'Fail')] },
    'rollback',
    'sample ratio mismatch at 10% traffic',
  ],
  [
    'a mismatch pauses when the plan says so',
    { srm: verdict('sample ratio', 'Fail'), analysis: srmPause },
    'pause',
    'sample ratio mismatch at 10% traffic; no other verdict is trusted',
  ],
  [
    'an accepted mismatch no longer acts; the guardrails do',
    {
      srm: verdict('sample ratio', 'Fail'),
      srmAccepted: true,
      assessments: [verdict('guardrail error_rate', 'Fail')],
    },
    'rollback',
    'guardrail error_rate failed at 10% traffic',
  ],
  [
    'a Fail rolls back at a look',
    { assessments: [verdict('guardrail latency_p99_ms', 'Fail')] },
    'rollback',
    'guardrail latency_p99_ms failed at 10% traffic',
  ],
  [
    'errors in a row roll back',
    {
      assessments: [verdict('guardrail error_rate', 'Error')],
      consecutiveErrors: { 'guardrail error_rate': 3 },
    },
    'rollback',
    'guardrail error_rate could not be measured 3 times in a row',
  ],
  [
    'an error not yet repeated waits',
    {
      assessments: [verdict('guardrail error_rate', 'Error')],
      consecutiveErrors: { 'guardrail error_rate': 2 },
    },
    'continue',
    '',
  ],
  ['the end with all Pass goes on', { moment: 'end' }, 'continue', ''],
  [
    'the end undecided extends first',
    { moment: 'end', assessments: [verdict('guardrail error_rate', 'Inconclusive')] },
    'extend',
    'step 1 bake: guardrails Inconclusive; extension 1 of 1',
  ],
  [
    'the end undecided after the extensions pauses (onInconclusive)',
    { moment: 'end', extensions: 1, assessments: [verdict('guardrail error_rate', 'Inconclusive')] },
    'pause',
    'step 1 bake: guardrails Inconclusive after 1 extension(s); resume to continue anyway',
  ],
  [
    'the end without data after the extensions rolls back (onNoData)',
    { moment: 'end', extensions: 1, assessments: [verdict('guardrail error_rate', 'NoData')] },
    'rollback',
    'step 1 bake: guardrails NoData after 1 extension(s)',
  ],
  [
    'labels only not significant pass when the plan says so',
    {
      moment: 'end',
      what: 'watch',
      assessments: [verdict('labels auc', 'Inconclusive')],
      labelsPassWhen: 'not_significant',
    },
    'continue',
    '',
  ],
  [
    'labels only not significant do not pass by default',
    {
      moment: 'end',
      what: 'watch',
      extensions: 1,
      assessments: [verdict('labels auc', 'Inconclusive')],
      labelsPassWhen: 'excluded',
    },
    'pause',
    'watch: guardrails Inconclusive after 1 extension(s)',
  ],
])('nextAction: %s', (_name, change, kind, reason) => {
  const action = nextAction({ ...base, ...change });
  expect(action.kind).toBe(kind);
  if (reason) expect('reason' in action ? action.reason : '').toContain(reason);
});

test('nextAction: a pause for a mismatch says so (a resume accepts it)', () => {
  const action = nextAction({ ...base, srm: verdict('sample ratio', 'Fail'), analysis: srmPause });
  expect(action).toMatchObject({ kind: 'pause', cause: 'srm' });
  expect(
    nextAction({ ...base, moment: 'end', extensions: 1, assessments: [verdict('x', 'Error')] }),
  ).toMatchObject({ kind: 'pause', cause: 'verdict' });
});

// ---- what sources answer ----

const goodCounts = () => ({
  requests: 3,
  errors: 1,
  units: 2,
  latency: {
    boundsMs: [...LATENCY_EDGES_MS],
    counts: [3, ...new Array<number>(LATENCY_EDGES_MS.length).fill(0)],
    maxMs: 0.05,
  },
});

test.each<[string, (c: ReturnType<typeof goodCounts>) => unknown, RegExp]>([
  ['not an object', () => 'ok', /expected object/],
  ['a negative count', (c) => ({ ...c, requests: -1 }), /requests/],
  ['a fraction', (c) => ({ ...c, errors: 0.5 }), /errors/],
  ['a count as text', (c) => ({ ...c, units: '2' }), /units/],
  ['more errors than requests', (c) => ({ ...c, errors: 4 }), /4 errors among 3 requests/],
  ['more units than requests', (c) => ({ ...c, units: 9 }), /9 units among 3 requests/],
  [
    'other buckets',
    (c) => ({ ...c, latency: { ...c.latency, boundsMs: c.latency.boundsMs.map((b) => b * 2) } }),
    /differ from LATENCY_EDGES_MS/,
  ],
  ['a short histogram', (c) => ({ ...c, latency: { ...c.latency, counts: [3] } }), /latency\.counts/],
  [
    'a histogram that does not add up',
    (c) => ({ ...c, latency: { ...c.latency, counts: c.latency.counts.map((n) => n * 2) } }),
    /holds 6 requests, not 3/,
  ],
])('a metrics source answering %s is refused', (_name, change, message) => {
  expect(checkCounts(goodCounts())).toMatchObject({ requests: 3 });
  let thrown: unknown;
  try {
    checkCounts(change(goodCounts()));
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(InvalidInputError);
  expect((thrown as Error).message).toMatch(message);
});

test.each<[string, unknown, RegExp]>([
  ['not an array', { rows: [] }, /expected an array/],
  ['a label of 2', [{ score: 0.5, label: 2, atMs: 1, labelAtMs: 2 }], /rows\[0\]: label/],
  ['a score above 1', [{ score: 1.5, label: 1, atMs: 1, labelAtMs: 2 }], /rows\[0\]: score/],
  ['no times', [{ score: 0.5, label: 1 }], /rows\[0\]: atMs/],
  ['too many rows', { length: 50_001 }, /expected an array/],
])('labelled rows with %s are refused', (_name, raw, message) => {
  expect(() => checkLabelled(raw)).toThrow(message);
});

test('more labelled rows than the cap are refused', () => {
  const many = Array.from({ length: 50_001 }, () => ({ score: 0.5, label: 1, atMs: 1, labelAtMs: 2 }));
  expect(() => checkLabelled(many)).toThrow(/50001 rows, at most 50000/);
});

// ---- the benchmark runs the workflow's rule ----

test('a relative-only error-rate rule fails exactly when the rate-ratio test does (what bench:analysis runs)', () => {
  const rand = seededRandom('equivalence');
  const r = rule({ metric: 'error_rate', relativeIncrease: 0, alpha: 0.01, minSamples: 100 });
  let fails = 0;
  for (let i = 0; i < 300; i++) {
    const cr = 100 + Math.floor(rand() * 3000);
    const br = 19 * cr;
    const ce = Math.floor(rand() * 0.04 * cr);
    const be = Math.floor(rand() * 0.02 * br);
    const a = assessGuardrail(r, live([[5, [cr, ce], [br, be]]]));
    const t = testRateRatio(
      [{ candidateRequests: cr, candidateEvents: ce, championRequests: br, championEvents: be }],
      0,
      0.01,
    );
    expect(a.verdict === 'Fail').toBe(t.verdict === 'Fail');
    if (t.verdict === 'Fail') fails++;
  }
  expect(fails).toBeGreaterThan(10);
});
