import { NotAllowedError } from '../../src/common/errors';
import {
  fastPlan,
  phaseIs,
  seedModel,
  startStack,
  uniqueModel,
  waitForStatus,
  expectRestored,
  type TestStack,
} from '../helpers/stack';
import { approveSignal } from '../../src/workflows/messages';

let stack: TestStack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => stack?.stop());

const approvalPlan = (approval: Record<string, unknown>) =>
  fastPlan({
    canary: {
      steps: [
        { traffic: 10, bake: '1s' },
        {
          traffic: 100,
          bake: '1s',
          approval: { approvers: ['alice', 'bob', 'carol'], required: 1, timeout: '2m', ...approval },
        },
      ],
    },
  });

async function startAwaiting(plan = approvalPlan({})) {
  const model = uniqueModel('approve');
  seedModel(stack.plane, model);
  const { id } = await stack.promotions.start({ model, version: 'v2', plan, startedBy: 'alice' });
  await waitForStatus(stack.promotions, id, phaseIs('awaiting_approval'));
  return { id, model };
}

test('refuses a user who is not on the allow-list, self-approval and a double vote; each refusal is logged', async () => {
  const { id } = await startAwaiting(approvalPlan({ required: 2 }));
  await expect(stack.promotions.vote(id, 'approve', 'mallory')).rejects.toThrow(
    new NotAllowedError('mallory is not an approver of step 2 (allowed: alice, bob, carol)'),
  );
  await expect(stack.promotions.vote(id, 'approve', 'alice')).rejects.toThrow(
    /alice started this promotion and cannot approve it/,
  );
  await expect(stack.promotions.vote(id, 'approve', 'bob')).resolves.toMatchObject({
    accepted: true,
    received: 1,
    required: 2,
  });
  await expect(stack.promotions.vote(id, 'approve', 'bob')).rejects.toThrow(
    /bob has already approved step 2/,
  );

  // The signal path shares the same rules: a refused signal is recorded, never silently dropped.
  await stack.promotions.handle(id).signal(approveSignal, { by: 'mallory' });
  const status = await waitForStatus(stack.promotions, id, (s) => s.refusalsTotal === 4);
  expect(status.refusals.map((r) => [r.who, r.count]).sort()).toEqual([
    ['alice', 1],
    ['bob', 1],
    ['mallory', 2],
  ]);
  expect(status.pendingApproval).toMatchObject({ received: 1, required: 2 });

  await stack.promotions.vote(id, 'approve', 'carol', 'second approval');
  expect((await stack.promotions.result(id)).outcome).toBe('succeeded');
});

test('N of M: the step waits until the required number of distinct approvers agree, signals and updates both count', async () => {
  const { id } = await startAwaiting(approvalPlan({ required: 2 }));
  await stack.promotions.handle(id).signal(approveSignal, { by: 'bob', comment: 'via the UI' });
  const one = await waitForStatus(stack.promotions, id, (s) => s.pendingApproval?.received === 1);
  expect(one.phase).toBe('awaiting_approval');
  expect(one.trafficPercent).toBe(10);
  await stack.promotions.vote(id, 'approve', 'carol');
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('succeeded');
  expect(result.status.decisions.filter((d) => d.kind === 'approved').map((d) => d.by)).toEqual([
    'bob',
    'carol',
  ]);
});

test('no approval pending: a vote is refused', async () => {
  const model = uniqueModel('approve');
  seedModel(stack.plane, model);
  const { id } = await stack.promotions.start({
    model,
    version: 'v2',
    plan: fastPlan({ canary: { steps: [{ traffic: 10, bake: '20s' }, { traffic: 100 }] } }),
    startedBy: 'ci',
  });
  await waitForStatus(stack.promotions, id, phaseIs('canary'));
  await expect(stack.promotions.vote(id, 'approve', 'alice')).rejects.toThrow('no approval is pending');
  await stack.promotions.control(id, 'abort', 'oncall', 'test over');
  await stack.promotions.result(id);
});

test('reject rolls back with outcome rejected', async () => {
  const { id, model } = await startAwaiting();
  await stack.promotions.vote(id, 'reject', 'bob', 'score distribution looks off');
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('rejected');
  expect(result.reason).toBe('step 2 rejected by bob: score distribution looks off');
  expectRestored(stack.plane, model);
});

test('approval timeout with onTimeout abort rolls back', async () => {
  const { id, model } = await startAwaiting(approvalPlan({ timeout: '2s', onTimeout: 'abort' }));
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('aborted');
  expect(result.reason).toMatch(/approval for step 2 timed out after 2s with 0 of 1/);
  expect(result.status.decisions.map((d) => d.kind)).toContain('approval_timeout');
  expectRestored(stack.plane, model);
});

test('approval timeout with onTimeout pause waits for a human; resume re-opens the approval', async () => {
  const { id } = await startAwaiting(approvalPlan({ timeout: '2s', onTimeout: 'pause' }));
  const paused = await waitForStatus(stack.promotions, id, phaseIs('paused'));
  expect(paused.pendingApproval).toMatchObject({ expiresAt: null, received: 0 });
  expect(paused.paused?.by).toBe('promote');
  await stack.promotions.control(id, 'resume', 'bob');
  const reopened = await waitForStatus(
    stack.promotions,
    id,
    (s) => s.phase === 'awaiting_approval' && s.pendingApproval?.expiresAt !== null,
  );
  expect(Date.parse(reopened.pendingApproval!.expiresAt!)).toBeGreaterThan(Date.now() - 1000);
  await stack.promotions.vote(id, 'approve', 'carol');
  expect((await stack.promotions.result(id)).outcome).toBe('succeeded');
});
