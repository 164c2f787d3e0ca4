/**
 * Days-long promotions on Temporal's time-skipping test server: a 7-day watch with hourly checks
 * finishes in seconds, continues-as-new on the way, and delayed labels that turn bad on day 3 still
 * roll the promotion back after 100%.
 */
import { randomUUID } from 'node:crypto';
import pino from 'pino';
import { TestWorkflowEnvironment } from '@temporalio/testing';
import { Promotions } from '../../src/client/promotions';
import { inProcessStack, type InProcessStack } from '../../src/worker/composition';
import { createPromotionWorker } from '../../src/worker/worker';
import { ensureSearchAttributes } from '../../src/dev/temporal';
import { fastPlan, installQuietRuntime, seedModel, uniqueModel } from '../helpers/stack';
import { ModelledMetrics } from '../helpers/modelled-metrics';

let env: TestWorkflowEnvironment;
let stack: InProcessStack;
let promotions: Promotions;
let running: Promise<void>;
let shutdown: () => void;

beforeAll(async () => {
  installQuietRuntime();
  const path = process.env.TEMPORAL_TEST_SERVER_PATH;
  if (!path)
    throw new Error(
      'TEMPORAL_TEST_SERVER_PATH is not set: run the tests with `npm test` (it installs the test server)',
    );
  env = await TestWorkflowEnvironment.createTimeSkipping({
    server: { executable: { type: 'existing-path', path } },
  });
  await ensureSearchAttributes(env.connection, env.namespace ?? 'default');
  stack = inProcessStack({ stateDir: null, logger: pino({ level: 'silent' }) });
  stack.catalog.metrics.inprocess = new ModelledMetrics(stack.plane, 20);
  const taskQueue = `timeskip-${randomUUID()}`;
  const worker = await createPromotionWorker({
    connection: env.nativeConnection,
    namespace: env.namespace ?? 'default',
    taskQueue,
    catalog: stack.catalog,
    workflowBundle: { codePath: process.env.PROMOTE_TEST_BUNDLE! },
  });
  running = worker.run();
  shutdown = () => worker.shutdown();
  promotions = new Promotions(env.client, taskQueue);
}, 120_000);

afterAll(async () => {
  shutdown?.();
  await running;
  await env?.teardown();
});

const weekLongPlan = () =>
  fastPlan({
    canary: {
      steps: [
        { traffic: 25, bake: '1h' },
        { traffic: 100, bake: '1h' },
      ],
    },
    guardrails: [{ metric: 'error_rate', max: 0.05, minSamples: 100 }],
    // Renewed every hour over the week (the 1m default would be 10,080 renewals in skipped time).
    analysis: { interval: '10m', maxExtensions: 1, lease: '3h', leaseRenewal: '1h' },
    watch: {
      window: '7d',
      interval: '1h',
      holdbackPercent: 10,
      labels: { metric: 'auc', maxRegression: 0.03, minLabels: 500 },
    },
  });

test('a 7-day watch with hourly checks completes, continuing as new on the way', async () => {
  const model = uniqueModel('week');
  seedModel(stack.plane, model);
  const startedAt = await env.currentTimeMs();
  const { id } = await promotions.start({
    model,
    version: 'v2',
    plan: weekLongPlan(),
    startedBy: 'ci',
    continueAsNewAfterEvents: 400,
  });
  const result = await promotions.result(id);
  expect(result.outcome).toBe('succeeded');
  expect((await env.currentTimeMs()) - startedAt).toBeGreaterThanOrEqual(7 * 24 * 3600_000);
  expect(result.status.continuedAsNew).toBeGreaterThanOrEqual(2);
  expect(result.status.decisions[0]).toMatchObject({ kind: 'started' });
  expect(result.status.lastChecks.map((c) => `${c.subject}: ${c.verdict}`)).toEqual([
    'sample ratio: Pass',
    'guardrail error_rate: Pass',
    'labels auc: Pass',
  ]);
  expect(stack.plane.snapshot().models[model]!.aliases.champion).toBe('v2');
}, 300_000);

test('delayed labels that turn bad on day 3 roll back after 100%', async () => {
  const model = uniqueModel('late');
  seedModel(stack.plane, model);
  const { id } = await promotions.start({ model, version: 'v2', plan: weekLongPlan(), startedBy: 'ci' });
  // Day 3 of the watch: the labels now show the candidate's scores barely track the outcome.
  await env.sleep('3d');
  stack.plane.setBehaviour(model, 'v2', { signal: 0.3 });
  const result = await promotions.result(id);
  expect(result.outcome).toBe('rolled_back');
  expect(result.reason).toMatch(/^labels auc failed at 90% traffic$/);
  expect(result.status.decisions.find((d) => d.kind === 'stop')!.evidence[0]).toMatch(
    /^labels auc: auc 0\.\d+ \(\d+ labels\) vs champion 0\.\d+ \(\d+\) on predictions made before .*: regression beyond 0\.03 is significant$/,
  );
  const state = stack.plane.snapshot();
  expect(state.routes[model]!.weights).toEqual({ v1: 100 });
  expect(state.models[model]!.aliases).toEqual({ champion: 'v1' });
}, 300_000);
