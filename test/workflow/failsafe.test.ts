/**
 * Messages and crashes can never break a promotion (issue: fail safe). Hostile signals sent as a
 * user would (`temporal workflow signal`, the client), hostile workflow input, a pause racing the
 * last vote, an abort racing the point of no return, the worker gone while the candidate has
 * traffic (the lease), compensations that keep failing, and forward steps through an outage.
 */
import { execFile } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { NativeConnection, type Worker } from '@temporalio/worker';
import { WorkflowFailedError } from '@temporalio/client';
import { recover } from '../../src/client/recovery';
import { hashPlan } from '../../src/plan/hash';
import { approveSignal, abortSignal, pauseSignal } from '../../src/workflows/messages';
import type { promotionWorkflow } from '../../src/workflows/promotion';
import { initialState } from '../../src/workflows/run';
import { createPromotionWorker } from '../../src/worker/worker';
import {
  expectRestored,
  fastPlan,
  seedModel,
  startStack,
  testAddress,
  uniqueModel,
  waitForStatus,
  type TestStack,
} from '../helpers/stack';
import { temporalCliPath } from '../helpers/tools';

const run = promisify(execFile);
let stack: TestStack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => stack?.stop());
afterEach(() => {
  for (const call of [
    'setAlias',
    'deploy',
    'decommission',
    'setWeights',
    'setShadow',
    'setPolicy',
    'lease',
  ] as const)
    stack.plane.setOutage(call, null);
});

const approvalPlan = (required = 1) =>
  fastPlan({
    canary: {
      steps: [
        { traffic: 10, bake: '1s' },
        { traffic: 50, bake: '1s', approval: { approvers: ['alice', 'bob'], required, timeout: '5m' } },
        { traffic: 100, bake: '1s' },
      ],
    },
  });

/** Size in bytes of the input the current run of a workflow was started with (carried state). */
async function currentInputBytes(id: string): Promise<number> {
  const handle = stack.client.workflow.getHandle(id);
  const history = await handle.fetchHistory();
  const started = history.events?.[0]?.workflowExecutionStartedEventAttributes;
  return (started?.input?.payloads ?? []).reduce((n, p) => n + (p.data?.length ?? 0), 0);
}

test('seven `temporal workflow signal` approvals with a 700 KB `by` are refused; continue-as-new and abort still work', async () => {
  const model = uniqueModel('huge-by');
  seedModel(stack.plane, model);
  const { id } = await stack.promotions.start({
    model,
    version: 'v2',
    plan: approvalPlan(),
    startedBy: 'ci',
    continueAsNewAfterEvents: 80,
  });
  await waitForStatus(stack.promotions, id, (s) => s.phase === 'awaiting_approval');
  const dir = mkdtempSync(join(tmpdir(), 'promote-signal-'));
  const file = join(dir, 'huge.json');
  writeFileSync(file, JSON.stringify({ by: 'x'.repeat(700 * 1024) }));
  for (let i = 0; i < 7; i++) {
    await run(temporalCliPath(), [
      'workflow',
      'signal',
      '--address',
      testAddress(),
      '--workflow-id',
      id,
      '--name',
      'approve',
      '--input-file',
      file,
    ]);
  }
  const refused = await waitForStatus(stack.promotions, id, (s) => s.refusalsTotal === 7);
  expect(refused.refusals).toEqual([
    expect.objectContaining({
      who: '(invalid sender)',
      what: 'approve',
      count: 7,
      why: 'by is at most 128 characters',
    }),
  ]);
  expect(refused.trafficPercent).toBe(10);
  // Guardrail rounds grow the history: the run hands over to a new one, with a small input.
  await waitForStatus(stack.promotions, id, (s) => s.continuedAsNew >= 1, 90_000);
  expect(await currentInputBytes(id)).toBeLessThan(64 * 1024);
  await expect(stack.promotions.control(id, 'abort', 'oncall', 'enough')).resolves.toMatchObject({
    accepted: true,
  });
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('aborted');
  expectRestored(stack.plane, model);
}, 180_000);

test('10,000 hostile signals: refusals aggregated, votes kept, carried state far under the payload limit', async () => {
  const model = uniqueModel('hostile');
  seedModel(stack.plane, model);
  const { id } = await stack.promotions.start({
    model,
    version: 'v2',
    plan: approvalPlan(2),
    startedBy: 'ci',
  });
  await waitForStatus(stack.promotions, id, (s) => s.phase === 'awaiting_approval');
  await stack.promotions.vote(id, 'approve', 'alice', 'looks good');
  const handle = stack.promotions.handle(id);
  const hostile = (i: number): unknown => {
    switch (i % 10) {
      case 0:
        return { by: `mallory-${i}` }; // valid name, not an approver: each a distinct refusal
      case 1:
        return { by: 'a\nb' };
      case 2:
        return { by: 'y'.repeat(129) };
      case 3:
        return { by: 42 };
      case 4:
        return ['not', 'an', 'object'];
      case 5:
        return { by: 'bob', comment: 'c'.repeat(2001) };
      case 6:
        return { by: 'ci' }; // the starter: no self-approval
      case 7:
        return { by: 'alice' }; // already approved
      case 8:
        return { by: '\u0000' };
      default:
        return null;
    }
  };
  const total = 10_000;
  for (let start = 0; start < total; start += 250) {
    await Promise.all(
      Array.from({ length: 250 }, (_, k) => {
        const i = start + k;
        const payload = hostile(i) as never;
        if (i % 3 === 0) return handle.signal(abortSignal, { by: `eve-${i}`, reason: 'r'.repeat(2001) });
        if (i % 3 === 1) return handle.signal(pauseSignal, payload);
        return handle.signal(approveSignal, payload);
      }),
    );
  }
  // One of them is accepted: the first valid pause to arrive (anyone may pause; the rest find it
  // paused). Signals of a batch race, so which one is not fixed.
  const status = await waitForStatus(stack.promotions, id, (s) => s.refusalsTotal >= total - 1, 120_000);
  expect(status.refusalsTotal).toBe(total - 1);
  expect(status.paused).not.toBeNull();
  expect(status.refusals.length).toBeLessThanOrEqual(100);
  expect(status.pendingApproval).toMatchObject({ received: 1, required: 2 });
  expect(status.decisions.filter((d) => d.kind === 'approved').map((d) => d.by)).toEqual(['alice']);
  expect(JSON.stringify(status).length).toBeLessThan(256 * 1024);
  // Whatever run it is in now, a hand-over carries a small state.
  expect(await currentInputBytes(id)).toBeLessThan(256 * 1024);
  await stack.promotions.vote(id, 'approve', 'bob');
  await stack.promotions.control(id, 'resume', 'oncall');
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('succeeded');
}, 300_000);

describe('the workflow checks its own input before touching anything', () => {
  const cases: [string, (input: Record<string, unknown>) => Record<string, unknown>, RegExp][] = [
    [
      'a plan hash that is not the plan',
      (i) => ({ ...i, planHash: 'sha256:00' }),
      /planHash: does not match/,
    ],
    [
      'carried state on a fresh start',
      (i) => ({ ...i, carried: { ...initialState(i as never, 'x', 0), stage: 'finalizing' } }),
      /carried: only a promotion continuing as new/,
    ],
    [
      'a model name that is not a name',
      (i) => ({ ...i, model: '__proto__/../x' }),
      /model: expected a model name/,
    ],
    [
      'an invalid plan',
      (i) => ({ ...i, plan: { ...(i.plan as object), canary: { steps: [{ traffic: 50 }] } } }),
      /plan\.canary\.steps\[0\]\.traffic/,
    ],
    ['no input at all', () => ({}), /model: expected/],
  ];
  test.each(cases)('%s', async (_name, mutate, message) => {
    const model = uniqueModel('input');
    seedModel(stack.plane, model);
    const plan = fastPlan();
    const input = mutate({ model, candidate: 'v2', plan, planHash: hashPlan(plan), startedBy: 'ci' });
    const before = stack.plane.operations.length;
    const handle = await stack.client.workflow.start<typeof promotionWorkflow>('promotionWorkflow', {
      workflowId: `promotion-${model}`,
      taskQueue: stack.taskQueue,
      args: [input as never],
    });
    const failure = await handle.result().catch((err: unknown) => err);
    expect(failure).toBeInstanceOf(WorkflowFailedError);
    expect((failure as WorkflowFailedError).cause?.message).toMatch(message);
    expect(stack.plane.operations.slice(before).filter((o) => o.model === model)).toEqual([]);
  });
});

test('a pause while the approval is pending holds: the last vote does not shift traffic until resumed', async () => {
  const model = uniqueModel('pause-vote');
  seedModel(stack.plane, model);
  const { id } = await stack.promotions.start({
    model,
    version: 'v2',
    plan: approvalPlan(),
    startedBy: 'ci',
  });
  await waitForStatus(stack.promotions, id, (s) => s.phase === 'awaiting_approval');
  await stack.promotions.control(id, 'pause', 'oncall', 'checking a dashboard');
  await expect(stack.promotions.vote(id, 'approve', 'bob')).resolves.toMatchObject({ accepted: true });
  await new Promise((r) => setTimeout(r, 3000));
  const held = await stack.promotions.status(id);
  expect(held).toMatchObject({ phase: 'paused', trafficPercent: 10 });
  await stack.promotions.control(id, 'resume', 'oncall');
  await waitForStatus(stack.promotions, id, (s) => s.trafficPercent === 50);
  expect((await stack.promotions.result(id)).outcome).toBe('succeeded');
});

test('an abort racing the point of no return either rolls back or is refused as too late, never both', async () => {
  const model = uniqueModel('late-abort');
  seedModel(stack.plane, model);
  const plan = fastPlan({ canary: { steps: [{ traffic: 100, bake: '1s' }] } });
  const { id } = await stack.promotions.start({ model, version: 'v2', plan, startedBy: 'ci' });
  await waitForStatus(stack.promotions, id, (s) => s.decisions.some((d) => d.kind === 'promoted'), 60_000);
  const answer = await stack.promotions
    .control(id, 'abort', 'oncall', 'second thoughts')
    .then((r) => r.message)
    .catch((err: Error) => err.message);
  const result = await stack.promotions.result(id);
  if (answer.startsWith('abort accepted')) {
    expect(result.outcome).toBe('aborted');
    expectRestored(stack.plane, model);
  } else {
    expect(answer).toMatch(/too late|already completed/);
    expect(result.outcome).toBe('succeeded');
    expect(stack.plane.snapshot().routes[model]!.weights).toEqual({ v2: 100 });
  }
});

test('with the worker gone mid-canary the lease expires and traffic returns to the champion; the promotion then rolls back', async () => {
  const model = uniqueModel('lease');
  seedModel(stack.plane, model);
  const taskQueue = `lease-${model}`;
  const connection = await NativeConnection.connect({ address: testAddress() });
  const startWorker = async (): Promise<{ worker: Worker; running: Promise<void> }> => {
    const worker = await createPromotionWorker({
      connection,
      namespace: 'default',
      taskQueue,
      catalog: stack.catalog,
      workflowBundle: { codePath: process.env.PROMOTE_TEST_BUNDLE! },
      shutdownGraceTime: '1s',
    });
    return { worker, running: worker.run() };
  };
  let w: { worker: Worker; running: Promise<void> } | undefined;
  try {
    w = await startWorker();
    const plan = fastPlan({
      canary: { steps: [{ traffic: 10, bake: '60s' }, { traffic: 100 }] },
      analysis: { interval: '1s', lease: '3s', leaseRenewal: '1s' },
    });
    const { id } = await stack.promotions.start({ model, version: 'v2', plan, startedBy: 'ci', taskQueue });
    await waitForStatus(stack.promotions, id, (s) => s.trafficPercent === 10);
    expect((await stack.plane.getLease(model))?.state).toBe('active');
    w.worker.shutdown();
    await w.running;
    // Nobody renews: after the lease's 3s the plane sends everything back to the champion.
    await new Promise((r) => setTimeout(r, 4500));
    expect(stack.plane.routeNow(model)?.weights).toEqual({ v1: 100 });
    expect((await stack.plane.getLease(model))?.state).toBe('expired');
    // The old holder cannot give traffic back to the candidate.
    const holder = (await stack.plane.getLease(model))!.holder;
    await expect(
      (async () => stack.plane.setWeights(model, { v1: 90, v2: 10 }, 'header:x-entity-id', holder))(),
    ).rejects.toThrow(/expired/);
    w = await startWorker();
    const result = await stack.promotions.result(id);
    expect(result.outcome).toBe('rolled_back');
    // Whichever the restarted worker sees first: the refused lease renewal, or the look that finds
    // no traffic on the candidate although the route gives it 10% (the split no longer matches).
    expect(result.reason).toMatch(/the traffic lease ended|sample ratio mismatch at 10% traffic/);
    expectRestored(stack.plane, model);
  } finally {
    // A failed expectation above must not be hidden by closing a connection a worker still uses.
    if (w && w.worker.getState() === 'RUNNING') w.worker.shutdown();
    await w?.running.catch(() => undefined);
    await connection.close();
  }
}, 120_000);

test('a compensation that keeps failing is retried until it succeeds, shown in status meanwhile', async () => {
  const model = uniqueModel('stuck-undo');
  seedModel(stack.plane, model);
  const plan = fastPlan({ canary: { steps: [{ traffic: 10, bake: '60s' }, { traffic: 100 }] } });
  const { id } = await stack.promotions.start({ model, version: 'v2', plan, startedBy: 'ci' });
  await waitForStatus(stack.promotions, id, (s) => s.trafficPercent === 10);
  stack.plane.setOutage('setAlias', 'the registry is down');
  await stack.promotions.control(id, 'abort', 'oncall', 'bad numbers');
  const failing = await waitForStatus(
    stack.promotions,
    id,
    (s) => (s.compensation?.attempts ?? 0) >= 2,
    60_000,
  );
  expect(failing).toMatchObject({ phase: 'rolling_back', outcome: null });
  expect(failing.compensation!.step).toMatch(/^registry: challenger/);
  expect(failing.compensation!.error).toMatch(/the registry is down/);
  // Traffic went back first, whatever the registry does.
  expect(stack.plane.routeNow(model)?.weights).toEqual({ v1: 100 });
  stack.plane.setOutage('setAlias', null);
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('aborted');
  expect(result.status.compensation).toBeNull();
  expectRestored(stack.plane, model);
}, 120_000);

test('a forward step rides out an outage of the data plane without failing the promotion', async () => {
  const model = uniqueModel('outage');
  seedModel(stack.plane, model);
  const plan = fastPlan({
    canary: {
      steps: [
        { traffic: 10, bake: '1s' },
        { traffic: 100, bake: '1s' },
      ],
    },
  });
  stack.plane.setOutage('setWeights', 'connection refused');
  const { id } = await stack.promotions.start({ model, version: 'v2', plan, startedBy: 'ci' });
  await new Promise((r) => setTimeout(r, 8000));
  expect((await stack.promotions.status(id)).outcome).toBeNull();
  stack.plane.setOutage('setWeights', null);
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('succeeded');
}, 120_000);

describe('promote recover', () => {
  const leasePlan = () =>
    fastPlan({
      canary: { steps: [{ traffic: 10, bake: '60s' }, { traffic: 100 }] },
      analysis: { interval: '1s', lease: '3s', leaseRenewal: '1s' },
    });
  const recoverOpts = (model: string, force = false) => ({
    model,
    by: 'oncall',
    reason: 'the promotion was terminated',
    force,
    taskQueue: stack.taskQueue,
    timeoutMs: 60_000,
  });

  test('after a terminate mid-canary: start is refused until recover restores traffic, aliases, policy and serving', async () => {
    const model = uniqueModel('terminated');
    seedModel(stack.plane, model);
    const { id } = await stack.promotions.start({ model, version: 'v2', plan: leasePlan(), startedBy: 'ci' });
    await waitForStatus(stack.promotions, id, (s) => s.trafficPercent === 10);
    await stack.promotions.handle(id).terminate('operator pressed the wrong button');
    // What the terminated promotion left: the challenger alias, the policy, the candidate's server.
    expect(stack.plane.snapshot().models[model]!.aliases).toMatchObject({ challenger: 'v2' });
    await new Promise((r) => setTimeout(r, 3500));
    expect(stack.plane.routeNow(model)?.weights).toEqual({ v1: 100 }); // the lease expired
    await expect(
      stack.promotions.start({ model, version: 'v2', plan: leasePlan(), startedBy: 'ci' }),
    ).rejects.toThrow(/promote recover/);

    const report = await recover(stack.client, recoverOpts(model));
    expect(report).toMatchObject({ outcome: 'recovered', consistent: true });
    expect(report.steps.filter((s) => s.changed).map((s) => s.step.split(':')[0])).toEqual([
      'registry', // challenger back to none
      'policy',
      'serving',
      'registry', // tags
    ]);
    expectRestored(stack.plane, model);
    expect((await stack.plane.getVersion(model, 'v2')).tags).toMatchObject({
      'promotion.outcome': 'recovered',
      'promotion.phase': 'completed',
      'promotion.recovered_by': 'oncall',
    });
    // Idempotent: a second run changes nothing but the tags.
    const again = await recover(stack.client, recoverOpts(model));
    expect(again.consistent).toBe(true);
    expect(again.steps.filter((s) => s.changed).map((s) => s.step)).toEqual([
      'registry: v2 tagged promotion.outcome=recovered',
    ]);
    // Recovered: a new promotion may start.
    const next = await stack.promotions.start({ model, version: 'v2', plan: fastPlan(), startedBy: 'ci' });
    await stack.promotions.control(next.id, 'abort', 'oncall', 'only checking that it starts');
    expect((await stack.promotions.result(next.id)).outcome).toBe('aborted');
  }, 120_000);

  test('a running promotion is recovered only with --force, which terminates it first', async () => {
    const model = uniqueModel('stuck');
    seedModel(stack.plane, model);
    const { id } = await stack.promotions.start({ model, version: 'v2', plan: leasePlan(), startedBy: 'ci' });
    await waitForStatus(stack.promotions, id, (s) => s.trafficPercent === 10);
    await expect(recover(stack.client, recoverOpts(model))).rejects.toThrow(/still running.*--force/);
    const report = await recover(stack.client, recoverOpts(model, true));
    expect(report.consistent).toBe(true);
    expect(report.steps[1]).toMatchObject({ step: 'traffic: 100% to v1', changed: true });
    expect((await stack.promotions.handle(id).describe()).status.name).toBe('TERMINATED');
    expectRestored(stack.plane, model);
  }, 120_000);

  test('a model that never had a promotion has nothing to recover', async () => {
    await expect(recover(stack.client, recoverOpts(uniqueModel('none')))).rejects.toThrow(/no promotion/);
  });
});
