import type { PlanInput } from '../../src/plan/schema';
import type { Phase, PromotionStatus } from '../../src/workflows/types';
import {
  expectRestored,
  fastPlan,
  lastSeq,
  opsAfter,
  seedModel,
  startStack,
  uniqueModel,
  waitForStatus,
  type TestStack,
} from '../helpers/stack';

let stack: TestStack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => stack?.stop());
afterEach(() => {
  stack.plane.setDelay('deploy', 0);
  stack.plane.setDelay('measureGate', 0);
});

const longCanary = { steps: [{ traffic: 10, bake: '60s' }, { traffic: 100 }] };

/** How to bring a promotion into each phase before aborting it. */
const cases: {
  phase: Phase;
  plan: Partial<PlanInput>;
  prepare?: () => void;
  pauseFirst?: boolean;
  /** Abort once this holds too (the phase is entered before its first effect). */
  ready?: (model: string, s: PromotionStatus) => boolean;
  /** Wait this long after `ready`, ms (to land inside a slow step). */
  settleMs?: number;
  undoTraffic: string[];
  /** Compensations expected after the abort, when not the full saga. */
  undo?: string[];
}[] = [
  {
    // Aborted while the deploy is in flight: the deploy finishes first, then it is undone.
    phase: 'staging',
    plan: {},
    prepare: () => stack.plane.setDelay('deploy', 3000),
    settleMs: 1000,
    undoTraffic: [],
    undo: ['deploy:v2', 'decommission:v2'],
  },
  {
    phase: 'validating',
    plan: {},
    prepare: () => stack.plane.setDelay('measureGate', 3000),
    undoTraffic: [],
  },
  {
    phase: 'shadow',
    plan: { shadow: { duration: '60s', maxDisagreement: 0.5 } },
    ready: (model) => Boolean(stack.plane.routeNow(model)?.shadow),
    undoTraffic: ['setShadow:'],
  },
  {
    phase: 'canary',
    plan: { canary: longCanary },
    ready: (_model, s) => s.trafficPercent === 10,
    undoTraffic: ['setWeights:{"v1":100}'],
  },
  {
    phase: 'awaiting_approval',
    plan: { canary: { steps: [{ traffic: 10 }, { traffic: 100, approval: { approvers: ['bob'] } }] } },
    undoTraffic: ['setWeights:{"v1":100}'],
  },
  { phase: 'paused', plan: { canary: longCanary }, pauseFirst: true, undoTraffic: ['setWeights:{"v1":100}'] },
  {
    phase: 'watching',
    plan: {
      canary: { steps: [{ traffic: 100, bake: '1s' }] },
      watch: { window: '60s', interval: '1s', holdbackPercent: 10 },
    },
    undoTraffic: ['setWeights:{"v1":100}'],
  },
];

test.each(cases)(
  'abort during $phase rolls back in order: traffic, registry, policy, serving',
  async ({ phase, plan, prepare, pauseFirst, ready, settleMs, undoTraffic, undo: undoExpected }) => {
    const model = uniqueModel(`abort-${phase}`);
    seedModel(stack.plane, model);
    prepare?.();
    const before = lastSeq(stack.plane);
    const { id } = await stack.promotions.start({
      model,
      version: 'v2',
      plan: fastPlan(plan),
      startedBy: 'ci',
    });
    if (pauseFirst) {
      await waitForStatus(stack.promotions, id, (s) => s.phase === 'canary' && s.trafficPercent === 10);
      await stack.promotions.control(id, 'pause', 'oncall', 'looking at dashboards');
    }
    const during = await waitForStatus(
      stack.promotions,
      id,
      (s) => s.phase === phase && (ready?.(model, s) ?? true),
    );
    if (settleMs) await new Promise((r) => setTimeout(r, settleMs));
    const atAbort = lastSeq(stack.plane);
    await expect(stack.promotions.control(id, 'abort', 'oncall', `abort in ${phase}`)).resolves.toMatchObject(
      { accepted: true },
    );
    const result = await stack.promotions.result(id);

    expect(result.outcome).toBe('aborted');
    expect(result.reason).toBe(`aborted by oncall: abort in ${phase}`);
    expect(during.phase).toBe(phase);
    expectRestored(stack.plane, model);

    // Compensations after the abort, in the saga's fixed order (an in-flight step may finish first).
    const after = opsAfter(stack.plane, model, atAbort).filter((op) => !op.startsWith('setTags'));
    if (undoExpected) {
      expect(after).toEqual(undoExpected);
    } else {
      const undo = after.filter((op) => !op.startsWith('deploy'));
      const expected = [...undoTraffic, 'setAlias:challenger', 'setPolicy:v2', 'decommission:v2'];
      expect(undo.slice(-expected.length)).toEqual(expected);
      const rollbackLog = result.status.decisions
        .filter((d) => d.kind === 'rollback')
        .map((d) => d.reason.split(':')[0]);
      expect(rollbackLog).toEqual([
        ...(undoTraffic.length > 0 ? ['traffic'] : []),
        'registry',
        'policy',
        'serving',
      ]);
    }
    expect(opsAfter(stack.plane, model, before)[0]).toMatch(/^(deploy|setAlias)/);
  },
);

test('pause holds the canary step; resume continues to completion', async () => {
  const model = uniqueModel('pause');
  seedModel(stack.plane, model);
  const plan = fastPlan({
    canary: {
      steps: [
        { traffic: 10, bake: '2s' },
        { traffic: 100, bake: '1s' },
      ],
    },
  });
  const { id } = await stack.promotions.start({ model, version: 'v2', plan, startedBy: 'ci' });
  await waitForStatus(stack.promotions, id, (s) => s.trafficPercent === 10);
  await stack.promotions.control(id, 'pause', 'oncall', 'hold on');
  await expect(stack.promotions.control(id, 'pause', 'oncall')).rejects.toThrow('already paused by oncall');
  // Well past the bake: still paused at 10%, with guardrails still checked.
  await new Promise((r) => setTimeout(r, 4000));
  const held = await stack.promotions.status(id);
  expect(held).toMatchObject({
    phase: 'paused',
    trafficPercent: 10,
    paused: { by: 'oncall', reason: 'hold on' },
  });
  expect(held.lastChecks.map((c) => c.subject)).toEqual(['sample ratio', 'guardrail error_rate']);
  await stack.promotions.control(id, 'resume', 'oncall');
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('succeeded');
  expect(result.status.decisions.map((d) => d.kind)).toEqual(expect.arrayContaining(['paused', 'resumed']));
});

test('workflow cancellation runs the compensations too', async () => {
  const model = uniqueModel('cancel');
  seedModel(stack.plane, model);
  const { id } = await stack.promotions.start({
    model,
    version: 'v2',
    plan: fastPlan({ canary: longCanary }),
    startedBy: 'ci',
  });
  await waitForStatus(stack.promotions, id, (s) => s.trafficPercent === 10);
  await stack.promotions.handle(id).cancel();
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('aborted');
  expect(result.reason).toBe('the workflow was cancelled');
  expectRestored(stack.plane, model);
});
