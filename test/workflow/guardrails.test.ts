import {
  expectRestored,
  fastPlan,
  phaseIs,
  seedModel,
  startStack,
  uniqueModel,
  waitForStatus,
  type TestStack,
} from '../helpers/stack';

let stack: TestStack;
afterEach(async () => stack?.stop());

const canary = {
  steps: [
    { traffic: 20, bake: '4s' },
    { traffic: 100, bake: '1s' },
  ],
};

test('a candidate whose error rate breaches the guardrail is rolled back with the evidence', async () => {
  stack = await startStack({ trafficRate: 1000 });
  const model = uniqueModel('breach');
  seedModel(stack.plane, model, { v2: { behaviour: { errorRate: 0.3 } } });
  const { id } = await stack.promotions.start({
    model,
    version: 'v2',
    plan: fastPlan({ canary }),
    startedBy: 'ci',
  });
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('rolled_back');
  expect(result.reason).toBe('guardrail error_rate failed at 20% traffic');
  const stop = result.status.decisions.find((d) => d.kind === 'stop')!;
  expect(stop.evidence[0]).toMatch(
    /^guardrail error_rate: error_rate 0\.\d+ \(\d+\/\d+\) vs max 0\.05: significantly worse/,
  );
  expectRestored(stack.plane, model);
  // The champion's alias never moved.
  expect(
    stack.plane.operations.filter(
      (o) => o.model === model && o.op === 'setAlias' && o.detail.alias === 'champion' && o.version === 'v2',
    ),
  ).toEqual([]);
});

test('a relative latency guardrail compares the candidate with the champion', async () => {
  stack = await startStack({ trafficRate: 1000 });
  const model = uniqueModel('slow');
  seedModel(stack.plane, model, { v2: { behaviour: { latencyMs: 40 } } });
  const plan = fastPlan({
    canary,
    guardrails: [{ metric: 'latency_p99_ms', relativeIncrease: 0.5, minSamples: 20 }],
  });
  const { id } = await stack.promotions.start({ model, version: 'v2', plan, startedBy: 'ci' });
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('rolled_back');
  expect(result.status.decisions.find((d) => d.kind === 'stop')!.evidence[0]).toMatch(
    /^guardrail latency_p99_ms: p99 within .* vs champion .*: significantly worse/,
  );
});

test('NoData is never a pass: without traffic the candidate is not promoted', async () => {
  stack = await startStack({ trafficRate: 0 });
  const model = uniqueModel('nodata');
  seedModel(stack.plane, model);
  const plan = fastPlan({
    canary: {
      steps: [
        { traffic: 20, bake: '1s' },
        { traffic: 100, bake: '1s' },
      ],
    },
    analysis: { interval: '1s', maxExtensions: 1, onNoData: 'rollback' },
  });
  const { id } = await stack.promotions.start({ model, version: 'v2', plan, startedBy: 'ci' });
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('rolled_back');
  expect(result.reason).toBe('step 1 bake: guardrails NoData after 1 extension(s)');
  expect(result.status.decisions.map((d) => d.kind)).toContain('bake_extended');
  expect(stack.plane.snapshot().models[model]!.aliases.champion).toBe('v1');
  expectRestored(stack.plane, model);
});

test('Inconclusive with onInconclusive pause waits for a human, whose resume continues', async () => {
  stack = await startStack({ trafficRate: 30 });
  const model = uniqueModel('inconclusive');
  seedModel(stack.plane, model);
  // 30 req/s at 20% gives far fewer than 10000 samples: Inconclusive, never Pass.
  const plan = fastPlan({
    canary: { steps: [{ traffic: 20, bake: '1s' }, { traffic: 100 }] },
    guardrails: [{ metric: 'error_rate', max: 0.05, minSamples: 10000 }],
    analysis: { interval: '1s', maxExtensions: 0, onInconclusive: 'pause' },
  });
  const { id } = await stack.promotions.start({ model, version: 'v2', plan, startedBy: 'ci' });
  const paused = await waitForStatus(stack.promotions, id, phaseIs('paused'));
  expect(paused.paused!.reason).toMatch(/^step 1 bake: guardrails Inconclusive/);
  expect(paused.trafficPercent).toBe(20);
  await stack.promotions.control(id, 'resume', 'oncall', 'checked by hand');
  expect((await stack.promotions.result(id)).outcome).toBe('succeeded');
});

test('a failing gate stops the promotion before any live traffic', async () => {
  stack = await startStack();
  const model = uniqueModel('gate');
  seedModel(stack.plane, model, {
    v4: {
      inputs: [
        { name: 'amount', type: 'string' },
        { name: 'device_id', type: 'string' },
      ],
    },
  });
  const { id } = await stack.promotions.start({ model, version: 'v4', plan: fastPlan(), startedBy: 'ci' });
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('failed');
  expect(result.reason).toBe(
    'gate feature_schema Fail: feature_schema incompatible: amount is double, expected string, missing device_id',
  );
  expect(stack.plane.operations.filter((o) => o.model === model && o.op === 'setWeights')).toEqual([]);
  expect(stack.plane.snapshot().deployments[model]).toEqual({ v1: expect.anything() });
});
