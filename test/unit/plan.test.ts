/** Plan validation, loading, hashing, JSON Schema and durations. */
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { PlanError } from '../../src/common/errors';
import { formatDuration, isDuration, parseDuration } from '../../src/plan/duration';
import { canonicalJson, hashPlan, loadPlanFile, parsePlanText, planJsonSchema } from '../../src/plan/load';
import { checkPlan, parsePlan } from '../../src/plan/validate';

// ---- builders ----

type Doc = Record<string, unknown>;

/** A valid plan using every section; each broken case below changes a few fields of it. */
function validPlan(): Doc {
  return {
    description: 'fraud scorer',
    gates: [{ metric: 'auc', min: 0.8, maxRegressionVsChampion: 0.01 }, { check: 'feature_schema' }],
    shadow: { duration: '10m', maxDisagreement: 0.05, maxScorePsi: 0.2 },
    canary: {
      steps: [
        { traffic: 5, bake: '5m', approval: { approvers: ['alice', 'bob'], required: 1, timeout: '4h' } },
        { traffic: 25, bake: '10m' },
        { traffic: 100 },
      ],
    },
    guardrails: [{ metric: 'error_rate', max: 0.02, relativeIncrease: 0.5 }],
    watch: { window: '7d', labels: { metric: 'auc', maxRegression: 0.02 } },
    policy: { thresholds: { block: 0.95, review: 0.7 } },
  };
}

/** Sets (or, with `undefined`, deletes) a dotted path such as `canary.steps.1.traffic`. */
function edit(doc: Doc, path: string, value: unknown): Doc {
  const keys = path.split('.');
  let node = doc;
  for (const key of keys.slice(0, -1)) node = node[key] as Doc;
  const last = keys[keys.length - 1]!;
  if (value === undefined) delete node[last];
  else node[last] = value;
  return doc;
}

function planWith(edits: Record<string, unknown>): Doc {
  const doc = validPlan();
  for (const [path, value] of Object.entries(edits)) edit(doc, path, value);
  return doc;
}

const issuePaths = (doc: unknown): string[] => [...new Set(checkPlan(doc).issues.map((i) => i.path))].sort();

/** The same value with the keys of every object in reverse order. */
function reverseKeys(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(reverseKeys);
  if (value && typeof value === 'object') {
    return Object.fromEntries(
      Object.entries(value)
        .reverse()
        .map(([k, v]) => [k, reverseKeys(v)]),
    );
  }
  return value;
}

function thrown(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    return err;
  }
  throw new Error('expected a throw');
}

// ---- validation ----

test('the base plan is valid, so every issue below comes from its edits', () => {
  expect(checkPlan(validPlan()).issues).toEqual([]);
});

const broken: [string, Record<string, unknown>, string[]][] = [
  ['traffic decreasing', { 'canary.steps.1.traffic': 3 }, ['canary.steps[1].traffic']],
  ['traffic equal to the previous step', { 'canary.steps.1.traffic': 5 }, ['canary.steps[1].traffic']],
  ['last step not 100', { 'canary.steps.2.traffic': 90 }, ['canary.steps[2].traffic']],
  ['traffic 0', { 'canary.steps.0.traffic': 0 }, ['canary.steps[0].traffic']],
  ['traffic 101', { 'canary.steps.2.traffic': 101 }, ['canary.steps[2].traffic']],
  ['traffic not an integer', { 'canary.steps.1.traffic': 25.5 }, ['canary.steps[1].traffic']],
  [
    'required above the number of approvers',
    { 'canary.steps.0.approval.required': 3 },
    ['canary.steps[0].approval.required'],
  ],
  ['required 0', { 'canary.steps.0.approval.required': 0 }, ['canary.steps[0].approval.required']],
  [
    'duplicate approver',
    { 'canary.steps.0.approval.approvers': ['alice', 'bob', 'alice'] },
    ['canary.steps[0].approval.approvers[2]'],
  ],
  ['no approvers', { 'canary.steps.0.approval.approvers': [] }, ['canary.steps[0].approval.approvers']],
  [
    'approver name with a space',
    { 'canary.steps.0.approval.approvers': ['alice', 'bob smith'] },
    ['canary.steps[0].approval.approvers[1]'],
  ],
  [
    'onTimeout not abort or pause',
    { 'canary.steps.0.approval.onTimeout': 'wait' },
    ['canary.steps[0].approval.onTimeout'],
  ],
  ['unknown gate metric', { 'gates.0.metric': 'f1' }, ['gates[0].metric']],
  ['unknown guardrail metric', { 'guardrails.0.metric': 'cpu' }, ['guardrails[0].metric']],
  ['unknown label metric', { 'watch.labels.metric': 'precision' }, ['watch.labels.metric']],
  ['bad bake duration', { 'canary.steps.0.bake': '5x' }, ['canary.steps[0].bake']],
  ['bake longer than a year', { 'canary.steps.0.bake': '400d' }, ['canary.steps[0].bake']],
  ['duration text too long', { 'canary.steps.0.bake': '1s'.repeat(30) }, ['canary.steps[0].bake']],
  ['lease shorter than two renewals', { analysis: { lease: '90s', leaseRenewal: '1m' } }, ['analysis.lease']],
  ['lease below 2s', { analysis: { lease: '1s', leaseRenewal: '200ms' } }, ['analysis.lease']],
  ['lease renewal not a duration', { analysis: { leaseRenewal: 'often' } }, ['analysis.leaseRenewal']],
  [
    'too many steps',
    { 'canary.steps': [...Array.from({ length: 20 }, (_, i) => ({ traffic: i + 1 })), { traffic: 100 }] },
    ['canary.steps'],
  ],
  [
    'too many approvers',
    { 'canary.steps.0.approval.approvers': Array.from({ length: 51 }, (_, i) => `u${i}`) },
    ['canary.steps[0].approval.approvers'],
  ],
  [
    'approver name too long',
    { 'canary.steps.0.approval.approvers': ['a'.repeat(129)] },
    ['canary.steps[0].approval.approvers[0]'],
  ],
  ['description too long', { description: 'x'.repeat(2001) }, ['description']],
  ['alias with a slash', { registry: { championAlias: 'a/b' } }, ['registry.championAlias']],
  [
    'sticky key with spaces',
    { 'canary.assignment': { stickyKey: 'header:x entity' } },
    ['canary.assignment.stickyKey'],
  ],
  ['bad approval timeout', { 'canary.steps.0.approval.timeout': '5x' }, ['canary.steps[0].approval.timeout']],
  ['bad shadow duration', { 'shadow.duration': '5x' }, ['shadow.duration']],
  ['bad watch window', { 'watch.window': '7 days' }, ['watch.window']],
  ['bad analysis interval', { analysis: { interval: '30' } }, ['analysis.interval']],
  ['unknown top-level field', { colour: 'red' }, ['colour']],
  ['unknown nested field', { 'canary.steps.1.weight': 25 }, ['canary.steps[1].weight']],
  ['unknown provider type', { registry: { type: 'sagemaker' } }, ['registry.type']],
  ['unknown notifier type', { notify: { type: 'slack' } }, ['notify.type']],
  ['apiVersion from the future', { apiVersion: 'promote/v2' }, ['apiVersion']],
  ['gate with both metric and check', { 'gates.1.metric': 'auc' }, ['gates[1]']],
  ['gate with neither metric nor check', { 'gates.1': { dataset: 'holdout' } }, ['gates[1]']],
  ['metric gate without limits', { 'gates.0': { metric: 'auc' } }, ['gates[0]']],
  ['check gate with a limit', { 'gates.1.min': 1 }, ['gates[1].min']],
  ['gate min above max', { 'gates.0.max': 0.5 }, ['gates[0].min']],
  ['guardrail without limits', { 'guardrails.0': { metric: 'error_rate' } }, ['guardrails[0]']],
  ['guardrail min above max', { 'guardrails.0.min': 0.5 }, ['guardrails[0].min']],
  ['guardrail alpha 0.5', { 'guardrails.0.alpha': 0.5 }, ['guardrails[0].alpha']],
  ['policy review equal to block', { 'policy.thresholds.review': 0.95 }, ['policy.thresholds.review']],
  ['policy review above block', { 'policy.thresholds.review': 0.99 }, ['policy.thresholds.review']],
  ['shadow without limits', { shadow: { duration: '10m' } }, ['shadow']],
  ['shadow sampleRate 0', { 'shadow.sampleRate': 0 }, ['shadow.sampleRate']],
  ['shadow sampleRate above 1', { 'shadow.sampleRate': 1.5 }, ['shadow.sampleRate']],
  ['holdback above 50', { 'watch.holdbackPercent': 60 }, ['watch.holdbackPercent']],
  ['bad sticky key', { 'canary.assignment': { stickyKey: 'cookie' } }, ['canary.assignment.stickyKey']],
  ['missing canary', { canary: undefined }, ['canary']],
  ['missing canary steps', { 'canary.steps': undefined }, ['canary.steps']],
  ['empty canary steps', { 'canary.steps': [] }, ['canary.steps']],
  [
    'several problems at once',
    {
      colour: 'red',
      registry: { type: 'sagemaker' },
      'gates.0.metric': 'f1',
      'canary.steps.0.bake': '5x',
      'canary.steps.0.approval.required': 3,
      'canary.steps.1.traffic': 3,
      'canary.steps.2.traffic': 90,
      'guardrails.0': { metric: 'error_rate' },
      'policy.thresholds.review': 0.95,
      'shadow.sampleRate': 0,
    },
    [
      'canary.steps[0].approval.required',
      'canary.steps[0].bake',
      'canary.steps[1].traffic',
      'canary.steps[2].traffic',
      'colour',
      'gates[0].metric',
      'guardrails[0]',
      'policy.thresholds.review',
      'registry.type',
      'shadow.sampleRate',
    ],
  ],
];

test.each(broken)('%s is reported at exactly its paths', (_name, edits, paths) => {
  const doc = planWith(edits);
  const result = checkPlan(doc);
  expect(result.plan).toBeUndefined();
  expect(issuePaths(doc)).toEqual([...paths].sort());
  for (const issue of result.issues) expect(issue.message).not.toBe('');
});

test('unknown fields are reported as "unknown field" at the key itself', () => {
  const issues = checkPlan(planWith({ colour: 'red', 'canary.steps.1.weight': 25 })).issues;
  expect(issues).toEqual(
    expect.arrayContaining([
      { path: 'colour', message: 'unknown field' },
      { path: 'canary.steps[1].weight', message: 'unknown field' },
    ]),
  );
  expect(issues).toHaveLength(2);
});

test('cross-field messages name the offending values', () => {
  const messages = (edits: Record<string, unknown>) =>
    checkPlan(planWith(edits)).issues.map((i) => i.message);
  expect(messages({ 'canary.steps.1.traffic': 3 })).toEqual([
    "traffic must be strictly greater than the previous step's (5)",
  ]);
  expect(messages({ 'canary.steps.2.traffic': 90 })).toEqual(['the last step must bring traffic to 100']);
  expect(messages({ 'canary.steps.0.approval.required': 3 })).toEqual([
    'required must be between 1 and the number of approvers (2)',
  ]);
  expect(messages({ 'canary.steps.0.approval.approvers': ['alice', 'alice'] })).toEqual([
    'approver "alice" is listed twice',
  ]);
  expect(messages({ 'policy.thresholds.review': 0.99 })).toEqual([
    'review (0.99) must be below block (0.95)',
  ]);
  expect(messages({ 'gates.1': {} })).toEqual(['a gate needs exactly one of metric or check']);
});

test('a document that is not an object is one issue at the root', () => {
  expect(issuePaths(null)).toEqual(['']);
  expect(issuePaths(['canary'])).toEqual(['']);
});

test('parsePlan throws a PlanError naming the source and listing every issue', () => {
  const err = thrown(() => parsePlan(planWith({ colour: 'red', 'canary.steps.2.traffic': 90 }), 'plan.yaml'));
  expect(err).toBeInstanceOf(PlanError);
  const planError = err as PlanError;
  expect(planError.source).toBe('plan.yaml');
  expect(planError.issues.map((i) => i.path).sort()).toEqual(['canary.steps[2].traffic', 'colour']);
  expect(planError.message).toMatch(/^plan\.yaml: 2 problems: /);
});

// ---- defaults ----

test('defaults are applied to a minimal plan', () => {
  const plan = parsePlan({ canary: { steps: [{ traffic: 100, approval: { approvers: ['alice'] } }] } });
  expect(plan.apiVersion).toBe('promote/v1');
  expect(plan.canary.steps[0]).toEqual({
    traffic: 100,
    bake: '0s',
    approval: { approvers: ['alice'], required: 1, timeout: '24h', onTimeout: 'abort' },
  });
  expect(plan.canary.assignment).toEqual({ stickyKey: 'header:x-entity-id' });
  expect(plan.analysis).toEqual({
    interval: '30s',
    maxExtensions: 1,
    onInconclusive: 'pause',
    onNoData: 'rollback',
    maxConsecutiveErrors: 3,
    lease: '5m',
    leaseRenewal: '1m',
    srm: { alpha: 0.001, onMismatch: 'rollback' },
  });
  expect(plan.registry).toEqual({
    type: 'inprocess',
    championAlias: 'champion',
    challengerAlias: 'challenger',
  });
  expect(plan.serving).toEqual({ type: 'inprocess' });
  expect(plan.metrics).toEqual({ type: 'inprocess' });
  expect(plan.notify).toEqual({ type: 'log' });
  expect(plan.gates).toEqual([]);
  expect(plan.guardrails).toEqual([]);
  expect(plan.shadow).toBeUndefined();
  expect(plan.watch).toBeUndefined();
});

test('defaults are applied inside optional sections', () => {
  const plan = parsePlan(validPlan());
  expect(plan.gates[0]!.dataset).toBe('holdout');
  expect(plan.shadow).toMatchObject({ sampleRate: 1, minPairs: 100 });
  expect(plan.guardrails[0]).toMatchObject({ alpha: 0.05, minSamples: 100 });
  expect(plan.watch).toMatchObject({ interval: '1h', holdbackPercent: 0, labels: { minLabels: 500 } });
  expect(plan.canary.steps[0]!.approval).toMatchObject({ required: 1, timeout: '4h', onTimeout: 'abort' });
});

test('default objects are not shared between parsed plans', () => {
  const minimal = () => parsePlan({ canary: { steps: [{ traffic: 100 }] } });
  const first = minimal();
  first.analysis.maxExtensions = 9;
  first.gates.push({ metric: 'auc', dataset: 'holdout', min: 0.5 });
  const second = minimal();
  expect(second.analysis.maxExtensions).toBe(1);
  expect(second.gates).toEqual([]);
});

// ---- text and files ----

test('parsePlanText reads YAML and JSON', () => {
  const yaml = parsePlanText('canary:\n  steps:\n    - traffic: 20\n    - traffic: 100\n', 'p.yaml');
  const json = parsePlanText('{"canary": {"steps": [{"traffic": 20}, {"traffic": 100}]}}', 'p.json');
  expect(yaml.canary.steps.map((s) => s.traffic)).toEqual([20, 100]);
  expect(json).toEqual(yaml);
});

test('a YAML syntax error is a PlanError with the parser message, not schema issues', () => {
  const err = thrown(() => parsePlanText('canary:\n  steps: [\n', 'bad.yaml')) as PlanError;
  expect(err).toBeInstanceOf(PlanError);
  expect(err.source).toBe('bad.yaml');
  expect(err.issues[0]!.message).toBe(
    'Flow sequence in block collection must be sufficiently indented and end with a ]',
  );
  expect(err.issues.map((i) => i.path)).not.toContain('canary');
});

test('a YAML syntax error is located by line and column', () => {
  const err = thrown(() => parsePlanText('description: ok\na: b: c\n', 'bad.yaml')) as PlanError;
  expect(err.issues[0]!.path).toBe('line 2, column 4');
});

test('a duplicate key is a syntax error', () => {
  const err = thrown(() =>
    parsePlanText('canary: {steps: [{traffic: 100}]}\ncanary: {}\n', 'dup.yaml'),
  ) as PlanError;
  expect(err.issues.map((i) => i.message)).toEqual(['Map keys must be unique']);
});

test('a schema problem in YAML text is reported with its plan path', () => {
  const err = thrown(() => parsePlanText('canary:\n  steps:\n    - traffic: 50\n', 'p.yaml')) as PlanError;
  expect(err.issues.map((i) => i.path)).toEqual(['canary.steps[0].traffic']);
});

test('loadPlanFile reports a missing file as one issue', () => {
  const err = thrown(() => loadPlanFile('/nonexistent/plan.yaml')) as PlanError;
  expect(err).toBeInstanceOf(PlanError);
  expect(err.issues).toEqual([{ path: '(file)', message: 'no such file' }]);
});

const examplesDir = join(__dirname, '..', '..', 'examples');
const examples = readdirSync(examplesDir).filter((f) => /\.(ya?ml|json)$/.test(f));

test('there are example plans', () => {
  expect(examples.length).toBeGreaterThan(0);
});

test.each(examples)('examples/%s is a valid plan', (file) => {
  const plan = loadPlanFile(join(examplesDir, file));
  expect(plan.canary.steps[plan.canary.steps.length - 1]!.traffic).toBe(100);
});

// ---- hashing and JSON Schema ----

test('canonicalJson sorts keys at every level and drops undefined', () => {
  expect(canonicalJson({ b: 1, a: { d: [2, { f: 1, e: 0 }], c: undefined } })).toBe(
    '{"a":{"d":[2,{"e":0,"f":1}]},"b":1}',
  );
});

test('hashPlan is stable under key order and changes when a value changes', () => {
  const plan = parsePlan(validPlan());
  const reordered = reverseKeys(plan) as typeof plan;
  expect(JSON.stringify(reordered)).not.toBe(JSON.stringify(plan));
  expect(reordered).toEqual(plan);
  expect(hashPlan(plan)).toMatch(/^sha256:[0-9a-f]{64}$/);
  expect(hashPlan(reordered)).toBe(hashPlan(plan));
  expect(hashPlan(parsePlan(planWith({ 'canary.steps.1.traffic': 30 })))).not.toBe(hashPlan(plan));
  expect(hashPlan(parsePlan(planWith({ 'guardrails.0.max': 0.03 })))).not.toBe(hashPlan(plan));
});

test('hashPlan covers defaults: spelling a default out does not change the hash', () => {
  const implicit = parsePlan({ canary: { steps: [{ traffic: 100 }] } });
  const explicit = parsePlan({ apiVersion: 'promote/v1', canary: { steps: [{ traffic: 100, bake: '0s' }] } });
  expect(hashPlan(explicit)).toBe(hashPlan(implicit));
});

test('a field added later keeps old hashes while it holds its default (running promotions replay)', () => {
  const plan = parsePlan({ canary: { steps: [{ traffic: 100 }] } });
  expect(plan.slices).toEqual([]);
  const { slices: _slices, ...before } = plan;
  expect(hashPlan(plan)).toBe(hashPlan(before));
  const sliced = parsePlan({
    canary: { steps: [{ traffic: 100 }] },
    slices: [{ name: 'country', key: 'field:country', top: 3 }],
  });
  expect(hashPlan(sliced)).not.toBe(hashPlan(plan));
});

test('planJsonSchema is an object schema that describes canary.steps', () => {
  const schema = planJsonSchema() as {
    type: string;
    required: string[];
    properties: {
      canary: {
        properties: {
          steps: {
            type: string;
            minItems: number;
            items: { properties: Record<string, Record<string, unknown>> };
          };
        };
      };
    };
  };
  expect(schema.type).toBe('object');
  expect(schema.required).toEqual(['canary']);
  const steps = schema.properties.canary.properties.steps;
  expect(steps.type).toBe('array');
  expect(steps.minItems).toBe(1);
  expect(steps.items.properties.traffic).toMatchObject({ type: 'integer', minimum: 1, maximum: 100 });
  expect(steps.items.properties.bake).toMatchObject({ type: 'string', default: '0s' });
  expect(typeof steps.items.properties.bake!.pattern).toBe('string');
});

// ---- durations ----

test.each([
  ['90s', 90_000],
  ['5m', 300_000],
  ['4h', 14_400_000],
  ['7d', 604_800_000],
  ['1h30m', 5_400_000],
  ['250ms', 250],
  ['1.5h', 5_400_000],
  ['0s', 0],
])('parseDuration(%s) = %d ms', (text, ms) => {
  expect(isDuration(text)).toBe(true);
  expect(parseDuration(text)).toBe(ms);
});

test.each(['', '5', 'm5', '-1s', '5x', '1 h', ' 5m', '5M', '1h 30m', '.5s'])(
  '%j is not a duration',
  (text) => {
    expect(isDuration(text)).toBe(false);
    expect(() => parseDuration(text)).toThrow(RangeError);
  },
);

test.each([
  [0, '0s'],
  [250, '250ms'],
  [45_000, '45s'],
  [90_000, '1m30s'],
  [5_400_000, '1h30m'],
  [14_400_000, '4h'],
  [604_800_000, '7d'],
  [90_061_000, '1d1h1m1s'],
])('formatDuration(%d) = %s and parses back', (ms, text) => {
  expect(formatDuration(ms)).toBe(text);
  expect(parseDuration(text)).toBe(ms);
});
