/**
 * The local plane under disruption, driven through the `promote` CLI: abort mid-canary, a gateway
 * restart mid-canary, and the worker process killed mid-promotion (between activities, and in the
 * middle of one) and restarted.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { temporal } from '@temporalio/proto';
import { invocationBody } from '../../src/providers/local/datasets';
import { startLocalPlaneFixture, type LocalPlaneFixture } from '../helpers/local-plane';
import { waitForStatus } from '../helpers/stack';

const PendingActivityState = temporal.api.enums.v1.PendingActivityState;
const TimeoutType = temporal.api.enums.v1.TimeoutType;

let f: LocalPlaneFixture;
let planFile: string;

beforeAll(async () => {
  f = await startLocalPlaneFixture('resilience');
  planFile = join(f.dir, 'plan.yaml');
  writeFileSync(
    planFile,
    `registry: { type: mlflow }
serving: { type: local }
metrics: { type: local }
gates: [{ check: feature_schema }]
canary:
  steps:
    - { traffic: 30, bake: 12s }
    - { traffic: 100, bake: 2s }
guardrails: [{ metric: error_rate, max: 0.1, minSamples: 20 }]
analysis: { interval: 1s }
`,
  );
}, 300_000);

afterAll(async () => f?.close());

const route = async () => (await f.plane.serving.getRoute(f.model))!.weights;

test('promote abort mid-canary (through the CLI) returns all traffic to the champion', async () => {
  expect(
    (await f.cli('start', '--model', f.model, '--version', '2', '--plan', planFile, '--as', 'ci')).code,
  ).toBe(0);
  await waitForStatus(f.promotions, f.model, (s) => s.trafficPercent === 30, 120_000);
  expect(await route()).toEqual({ '1': 70, '2': 30 });
  expect(await f.cli('abort', f.model, '--as', 'oncall', '--reason', 'paged')).toMatchObject({
    code: 0,
    stdout: 'abort accepted; rolling back\n',
  });
  expect((await f.promotions.result(f.model)).outcome).toBe('aborted');
  expect(JSON.parse((await f.cli('status', f.model, '--json')).stdout)).toMatchObject({
    phase: 'completed',
    outcome: 'aborted',
    trafficPercent: 0,
  });
  expect(await route()).toEqual({ '1': 100 });
  expect(f.servers('2')).toBe(0);
}, 180_000);

test('a gateway restart mid-canary keeps the weights and the traffic flowing', async () => {
  expect(
    (await f.cli('start', '--model', f.model, '--version', '2', '--plan', planFile, '--as', 'ci')).code,
  ).toBe(0);
  await waitForStatus(f.promotions, f.model, (s) => s.trafficPercent === 30, 120_000);
  await f.restartGateway();
  expect(await route()).toEqual({ '1': 70, '2': 30 });
  const holdout = f.plane.datasets.holdout(f.model);
  const features = holdout.columns.filter((c) => c !== 'entity_id' && c !== 'label');
  const served = new Set<string>();
  for (let i = 0; i < 60; i++) {
    const response = await fetch(`${f.gatewayUrl}/models/${f.model}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-entity-id': `probe-${i}` },
      // Well-formed rows: malformed probes would count as errors of the versions.
      body: invocationBody([holdout.rows[i % holdout.rows.length]!], features),
    });
    served.add(response.headers.get('x-promote-version') ?? '');
  }
  expect([...served].sort()).toEqual(['1', '2']);
  const result = await f.promotions.result(f.model);
  expect({ outcome: result.outcome, reason: result.reason }).toMatchObject({ outcome: 'succeeded' });
  expect(await route()).toEqual({ '2': 100 });
}, 240_000);

test('the worker killed mid-promotion and restarted finishes it and leaves no duplicate model servers', async () => {
  // Promote whichever of 1 and 2 is not the champion now (both are registered versions).
  const champion = (await f.plane.registry.getAlias(f.model, 'champion'))!;
  const candidate = champion === '1' ? '2' : '1';
  expect(
    (await f.cli('start', '--model', f.model, '--version', candidate, '--plan', planFile, '--as', 'ci')).code,
  ).toBe(0);
  await waitForStatus(
    f.promotions,
    f.model,
    (s) => s.trafficPercent === 30 && s.lastChecks.length > 0,
    120_000,
  );
  await f.killWorker();
  const result = await f.promotions.result(f.model);
  expect({ outcome: result.outcome, reason: result.reason }).toMatchObject({ outcome: 'succeeded' });
  expect(await route()).toEqual({ [candidate]: 100 });
  expect(await f.plane.registry.getAlias(f.model, 'champion')).toBe(candidate);
  expect(f.servers(candidate)).toBe(1);
  expect(f.servers(champion)).toBe(0);
}, 240_000);

test('a worker killed in the middle of an activity is noticed by its heartbeat timeout, not the 2-minute start-to-close timeout', async () => {
  const champion = (await f.plane.registry.getAlias(f.model, 'champion'))!;
  const candidate = champion === '1' ? '2' : '1';
  expect(
    (await f.cli('start', '--model', f.model, '--version', candidate, '--plan', planFile, '--as', 'ci')).code,
  ).toBe(0);
  // The deploy (a model server's start, seconds long) is running on the worker: kill it there.
  const handle = f.promotions.handle(f.model);
  const deadline = Date.now() + 60_000;
  for (;;) {
    const pending = (await handle.describe()).raw.pendingActivities ?? [];
    const deploying = pending.some(
      (a) =>
        a.activityType?.name === 'deployVersion' &&
        a.state === PendingActivityState.PENDING_ACTIVITY_STATE_STARTED,
    );
    if (deploying) break;
    if (Date.now() > deadline) throw new Error('the deploy activity never started');
    await new Promise((r) => setTimeout(r, 100));
  }
  await f.killWorker();
  const result = await f.promotions.result(f.model);
  expect({ outcome: result.outcome, reason: result.reason }).toMatchObject({ outcome: 'succeeded' });
  // The lost attempt ended by a heartbeat timeout (before activities heartbeated, only the
  // start-to-close timeout, minutes later, could end it). A retried activity's started event
  // carries its attempt number and the failure of the attempt before.
  const history = await handle.fetchHistory();
  const retried = (history.events ?? [])
    .map((e) => e.activityTaskStartedEventAttributes)
    .filter((a) => a && (a.attempt ?? 1) > 1)
    .map((a) => a!.lastFailure?.timeoutFailureInfo?.timeoutType);
  expect(retried).toContain(TimeoutType.TIMEOUT_TYPE_HEARTBEAT);
  expect(retried).not.toContain(TimeoutType.TIMEOUT_TYPE_START_TO_CLOSE);
  expect(f.servers(candidate)).toBe(1);
  expect(f.servers(champion)).toBe(0);
}, 240_000);
