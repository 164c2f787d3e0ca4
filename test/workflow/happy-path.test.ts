import {
  fastPlan,
  seedModel,
  startStack,
  uniqueModel,
  waitForStatus,
  phaseIs,
  type TestStack,
} from '../helpers/stack';

let stack: TestStack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => stack?.stop());

test('a candidate goes through gates, canary steps and an approval to 100%, and the champion alias moves', async () => {
  const model = uniqueModel('happy');
  seedModel(stack.plane, model);
  const { id, planHash } = await stack.promotions.start({
    model,
    version: 'v2',
    plan: fastPlan(),
    startedBy: 'ci',
  });

  const waiting = await waitForStatus(stack.promotions, id, phaseIs('awaiting_approval'));
  expect(waiting.trafficPercent).toBe(10);
  expect(waiting.pendingApproval).toMatchObject({
    step: 1,
    approvers: ['alice', 'bob'],
    required: 1,
    received: 0,
  });

  const vote = await stack.promotions.vote(id, 'approve', 'alice', 'looks fine');
  expect(vote).toMatchObject({ accepted: true, received: 1, required: 1 });

  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('succeeded');
  expect(result.status.planHash).toBe(planHash);
  expect(result.status.trafficPercent).toBe(100);

  const state = stack.plane.snapshot();
  expect(state.models[model]!.aliases.champion).toBe('v2');
  expect(state.models[model]!.aliases.challenger).toBeUndefined();
  expect(state.routes[model]!.weights).toEqual({ v2: 100 });
  expect(Object.keys(state.deployments[model]!)).toEqual(['v2']);
  expect(state.policies[model]!.v2).toEqual({ block: 0.9, review: 0.6 });

  const weights = stack.plane.operations
    .filter((o) => o.model === model && o.op === 'setWeights')
    .map((o) => o.detail.weights);
  expect(weights).toEqual([{ v1: 90, v2: 10 }, { v1: 50, v2: 50 }, { v2: 100 }]);
  const kinds = result.status.decisions.map((d) => d.kind);
  expect(kinds).toEqual(
    expect.arrayContaining([
      'started',
      'staged',
      'gate',
      'traffic',
      'approval_requested',
      'approved',
      'promoted',
      'completed',
    ]),
  );
  expect(result.status.decisions.find((d) => d.kind === 'approved')).toMatchObject({
    by: 'alice',
    reason: 'looks fine',
  });
});
