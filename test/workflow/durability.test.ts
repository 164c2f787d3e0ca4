import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { randomUUID } from 'node:crypto';
import { Promotions } from '../../src/client/promotions';
import { ConflictError } from '../../src/common/errors';
import { InProcessPlane, type Operation } from '../../src/providers/inprocess/plane';
import {
  fastPlan,
  phaseIs,
  seedModel,
  startStack,
  testAddress,
  uniqueModel,
  waitForStatus,
  type TestStack,
} from '../helpers/stack';

let stack: TestStack;
beforeAll(async () => {
  stack = await startStack();
});
afterAll(async () => stack?.stop());

test('of two concurrent starts for the same model exactly one wins; the other names the running promotion', async () => {
  const model = uniqueModel('race');
  seedModel(stack.plane, model, { v2: {}, v3: {} });
  const plan = fastPlan({ canary: { steps: [{ traffic: 10, bake: '30s' }, { traffic: 100 }] } });
  const results = await Promise.allSettled([
    stack.promotions.start({ model, version: 'v2', plan, startedBy: 'ci-1' }),
    stack.promotions.start({ model, version: 'v3', plan, startedBy: 'ci-2' }),
  ]);
  const won = results.filter((r) => r.status === 'fulfilled');
  const lost = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  expect(won).toHaveLength(1);
  expect(lost).toHaveLength(1);
  expect(lost[0]!.reason).toBeInstanceOf(ConflictError);
  expect((lost[0]!.reason as Error).message).toMatch(
    new RegExp(`^a promotion of ${model} is already running: promotion-${model} \\(candidate v[23], `),
  );
  await stack.promotions.control(`promotion-${model}`, 'abort', 'oncall', 'race test over');
  await stack.promotions.result(`promotion-${model}`);
  // Once the first has finished, the model can be promoted again.
  await expect(
    stack.promotions.start({
      model,
      version: 'v3',
      plan: fastPlan({ canary: { steps: [{ traffic: 100 }] } }),
      startedBy: 'ci',
    }),
  ).resolves.toMatchObject({ id: `promotion-${model}` });
  expect((await stack.promotions.result(model)).outcome).toBe('succeeded');
});

test('continue-as-new with a lowered threshold carries the whole state: votes, decisions, traffic, plan', async () => {
  const model = uniqueModel('can');
  seedModel(stack.plane, model);
  const plan = fastPlan({
    canary: {
      steps: [
        { traffic: 10, bake: '1s' },
        { traffic: 100, bake: '1s', approval: { approvers: ['alice', 'bob'], required: 2, timeout: '5m' } },
      ],
    },
  });
  const { id, planHash } = await stack.promotions.start({
    model,
    version: 'v2',
    plan,
    startedBy: 'ci',
    continueAsNewAfterEvents: 60,
  });
  await waitForStatus(stack.promotions, id, phaseIs('awaiting_approval'));
  await stack.promotions.vote(id, 'approve', 'alice', 'first');
  // Guardrail checks every second grow the history until the run continues as new.
  const carried = await waitForStatus(stack.promotions, id, (s) => s.continuedAsNew >= 2, 90_000);
  expect(carried).toMatchObject({
    phase: 'awaiting_approval',
    trafficPercent: 10,
    planHash,
    pendingApproval: {
      step: 1,
      received: 1,
      required: 2,
      votes: [expect.objectContaining({ by: 'alice', comment: 'first' })],
    },
  });
  expect(carried.decisions[0]).toMatchObject({ kind: 'started', by: 'ci' });
  expect(carried.decisions.filter((d) => d.kind === 'continued_as_new').length).toBe(carried.continuedAsNew);
  // The double-vote rule still holds after the hand-over.
  await expect(stack.promotions.vote(id, 'approve', 'alice')).rejects.toThrow(
    'alice has already approved step 2',
  );
  await stack.promotions.vote(id, 'approve', 'bob', 'second');
  const result = await stack.promotions.result(id);
  expect(result.outcome).toBe('succeeded');
  expect(result.status.decisions.filter((d) => d.kind === 'approved').map((d) => d.by)).toEqual([
    'alice',
    'bob',
  ]);
  const runs = stack.client.workflow.list({ query: `WorkflowId = '${id}'` });
  let count = 0;
  for await (const _ of runs) count++;
  expect(count).toBeGreaterThanOrEqual(3);
});

function spawnWorker(stateDir: string, taskQueue: string): ChildProcess {
  // One process (tsx as a loader, not its CLI wrapper), so SIGKILL really kills the worker.
  const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, '../../src/worker/main.ts')], {
    env: {
      ...process.env,
      TEMPORAL_ADDRESS: testAddress(),
      TEMPORAL_NAMESPACE: 'default',
      PROMOTE_TASK_QUEUE: taskQueue,
      PROMOTE_STATE_DIR: stateDir,
      PROMOTE_TRAFFIC_RATE: '300',
      PROMOTE_WORKFLOW_BUNDLE: process.env.PROMOTE_TEST_BUNDLE,
      LOG_LEVEL: process.env.PROMOTE_TEST_WORKER_LOG_LEVEL ?? 'warn',
    },
    stdio: ['ignore', 'ignore', 'inherit'],
  });
  return child;
}

test('a worker killed with SIGKILL mid-bake and restarted finishes the promotion with traffic and alias consistent', async () => {
  const stateDir = mkdtempSync(join(tmpdir(), 'promote-kill-'));
  const taskQueue = `kill-${randomUUID()}`;
  const model = uniqueModel('kill');
  const seeded = new InProcessPlane(stateDir);
  seedModel(seeded, model);
  const plan = fastPlan({
    canary: {
      steps: [
        { traffic: 10, bake: '6s' },
        { traffic: 100, bake: '2s' },
      ],
    },
  });
  const promotions = new Promotions(stack.client, taskQueue);

  let worker = spawnWorker(stateDir, taskQueue);
  try {
    const { id } = await promotions.start({ model, version: 'v2', plan, startedBy: 'ci' });
    await waitForStatus(promotions, id, (s) => s.trafficPercent === 10 && s.lastChecks.length > 0, 60_000);
    worker.kill('SIGKILL');
    await new Promise((r) => worker.once('exit', r));
    // No worker now: a query would wait for one, so ask the server instead.
    expect((await promotions.handle(id).describe()).status.name).toBe('RUNNING');
    worker = spawnWorker(stateDir, taskQueue);
    const result = await promotions.result(id);
    expect(result.outcome).toBe('succeeded');

    const state = new InProcessPlane(stateDir).snapshot();
    expect(state.routes[model]!.weights).toEqual({ v2: 100 });
    expect(state.models[model]!.aliases).toEqual({ champion: 'v2' });
    expect(Object.keys(state.deployments[model]!)).toEqual(['v2']);
    const ops = readFileSync(join(stateDir, 'operations.jsonl'), 'utf8')
      .trim()
      .split('\n')
      .map((l) => JSON.parse(l) as Operation);
    expect(ops.filter((o) => o.op === 'deploy' && o.version === 'v2')).toHaveLength(1);
    expect(ops.filter((o) => o.op === 'setWeights').map((o) => o.detail.weights)).toEqual([
      { v1: 90, v2: 10 },
      { v2: 100 },
    ]);
  } finally {
    worker.kill('SIGTERM');
    await new Promise((r) => (worker.exitCode !== null ? r(null) : worker.once('exit', r)));
  }
}, 180_000);
