/**
 * Days-long promotions on Temporal's time-skipping test server: a 7-day watch with hourly checks
 * finishes in seconds, continues-as-new on the way, and delayed labels that turn bad on day 3 still
 * roll the promotion back after 100%. Slices: a candidate bad in one country only is rolled back
 * by that slice's check while the overall guardrail passes; a good one is not held by its slices.
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
  // No timer is cancelled on the way (the lease loop's included): the time-skipping server strands
  // a run whose completion cancels a timer that fired meanwhile (sdk-java#3088).
  const events = [];
  // Every run of the chain, newest first: each run's start names the run it continued.
  for (let runId: string | undefined = undefined, runs = 0; runs < 20; runs++) {
    const history = await env.client.workflow.getHandle(id, runId).fetchHistory();
    events.push(...(history.events ?? []));
    runId =
      history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
    if (!runId) break;
  }
  expect(events.filter((e) => e.timerStartedEventAttributes).length).toBeGreaterThan(10);
  expect(events.filter((e) => e.timerCanceledEventAttributes).map((e) => e.eventId?.toString())).toEqual([]);
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

/** Hour-long bakes with the country slices (top 3 by traffic: US, DE, FR in the synthetic traffic). */
const slicedPlan = () =>
  fastPlan({
    canary: {
      steps: [
        { traffic: 25, bake: '1h' },
        { traffic: 100, bake: '1h' },
      ],
    },
    guardrails: [{ metric: 'error_rate', max: 0.05, minSamples: 100 }],
    slices: [{ name: 'country', key: 'field:country', top: 3 }],
    analysis: { interval: '10m', maxExtensions: 1, lease: '3h', leaseRenewal: '1h' },
  });

test('a candidate failing in one country is rolled back by that slice, naming it', async () => {
  const model = uniqueModel('slice');
  seedModel(stack.plane, model);
  // France (15% of traffic) gets 15% errors: about 2.3% overall, well within the 5% limit.
  stack.plane.setBehaviour(model, 'v2', { byCountry: { FR: { errorRate: 0.15 } } });
  const { id } = await promotions.start({ model, version: 'v2', plan: slicedPlan(), startedBy: 'ci' });
  const result = await promotions.result(id);
  expect(result.outcome).toBe('rolled_back');
  expect(result.reason).toBe('guardrail error_rate [country=FR] failed at 25% traffic');
  const checks = result.status.lastChecks.map((c) => `${c.subject}: ${c.verdict}`);
  expect(checks).toContain('guardrail error_rate [country=FR]: Fail');
  // The overall rule alone would not have stopped it.
  expect(checks).not.toContain('guardrail error_rate: Fail');
  const stop = result.status.decisions.find((d) => d.kind === 'stop')!;
  expect(stop.evidence[0]).toMatch(
    /^guardrail error_rate \[country=FR\]: error_rate 0\.1\d* \(\d+\/\d+\) vs max 0\.05/,
  );
  expect(stack.plane.snapshot().routes[model]!.weights).toEqual({ v1: 100 });
  expect(stack.plane.snapshot().routes[model]!.sliceKeys).toEqual([]);
}, 300_000);

test('a good candidate is not held back by its slices (named `constructor`, which state handles as a name)', async () => {
  const model = uniqueModel('slice-ok');
  seedModel(stack.plane, model);
  const plan = { ...slicedPlan(), slices: [{ name: 'constructor', key: 'field:country', top: 3 }] };
  const { id } = await promotions.start({ model, version: 'v2', plan, startedBy: 'ci' });
  const result = await promotions.result(id);
  expect(result.outcome).toBe('succeeded');
  const slices = result.status.lastChecks.filter((c) => c.slice !== undefined);
  expect(slices.map((c) => c.slice).sort()).toEqual(['constructor=DE', 'constructor=FR', 'constructor=US']);
  expect(slices.every((c) => c.verdict !== 'Fail')).toBe(true);
  // Undecided slices leave no trace in the decision log; the route recorded the plan's slice key
  // from the first shift on (a later promotion sets its own keys, a rollback clears them).
  expect(result.status.decisions.some((d) => d.reason.includes('[constructor='))).toBe(false);
  expect(stack.plane.snapshot().routes[model]!.sliceKeys).toEqual(['field:country']);
}, 300_000);
