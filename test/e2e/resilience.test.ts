/**
 * The local plane under disruption, driven through the `promote` CLI: abort mid-canary, a gateway
 * restart mid-canary, and the worker process killed mid-promotion (between activities, and in the
 * middle of one) and restarted.
 */
import { execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import pino from 'pino';
import { Promotions } from '../../src/client/promotions';
import { freePort } from '../../src/common/net';
import { pythonEnv } from '../../src/dev/mlflow';
import { SqlitePredictionLog } from '../../src/serving/gateway/prediction-log';
import { Gateway } from '../../src/serving/gateway/server';
import { ModelServerSupervisor } from '../../src/serving/supervisor';
import { TrafficGenerator } from '../../src/serving/traffic';
import { localPlane, type LocalPlane } from '../../src/worker/local-plane';
import { invocationBody } from '../../src/providers/local/datasets';
import { startMlflowFixture, type MlflowFixture } from '../helpers/mlflow';
import { testAddress, waitForStatus } from '../helpers/stack';

const ROOT = join(__dirname, '../..');
const PendingActivityState = temporal.api.enums.v1.PendingActivityState;
const TOKEN = 'resilience-token';
const INGEST_TOKEN = 'ingest-token';
const logger = pino({ level: 'silent' });
const taskQueue = `resilience-${randomUUID()}`;
let dir: string;
let mlflow: MlflowFixture;
let gatewayPort: number;
let gateway: Gateway;
let log: SqlitePredictionLog;
let plane: LocalPlane;
let traffic: TrafficGenerator;
let worker: ChildProcess;
let connection: Connection;
let promotions: Promotions;
let planFile: string;

const env = () => ({
  ...process.env,
  TEMPORAL_ADDRESS: testAddress(),
  TEMPORAL_NAMESPACE: 'default',
  PROMOTE_TASK_QUEUE: taskQueue,
  PROMOTE_MLFLOW_URL: mlflow.server.url,
  PROMOTE_GATEWAY_URL: `http://127.0.0.1:${gatewayPort}`,
  PROMOTE_GATEWAY_TOKEN: TOKEN,
  PROMOTE_PYTHON_ENV: pythonEnv(),
  PROMOTE_DATASETS_DIR: join(mlflow.dir, 'datasets'),
  PROMOTE_SERVERS_DIR: join(dir, 'servers'),
  PROMOTE_STATE_DIR: join(dir, 'inprocess'),
  PROMOTE_WORKFLOW_BUNDLE: process.env.PROMOTE_TEST_BUNDLE,
  LOG_LEVEL: 'warn',
});

function startWorker(): ChildProcess {
  return spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/worker/main.ts')], {
    env: env(),
    stdio: ['ignore', 'ignore', 'inherit'],
  });
}

function cli(...args: string[]): { code: number; stdout: string; stderr: string } {
  try {
    const stdout = execFileSync(
      process.execPath,
      ['--import', 'tsx', join(ROOT, 'src/client/main.ts'), ...args],
      { env: env(), encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] },
    );
    return { code: 0, stdout, stderr: '' };
  } catch (err) {
    const e = err as { status: number; stdout: string; stderr: string };
    return { code: e.status, stdout: e.stdout, stderr: e.stderr };
  }
}

async function startGateway(): Promise<void> {
  log = new SqlitePredictionLog(join(dir, 'gateway', 'predictions.db'));
  gateway = new Gateway({
    stateDir: join(dir, 'gateway'),
    log,
    adminToken: TOKEN,
    ingestToken: INGEST_TOKEN,
    logger,
  });
  await gateway.listen(gatewayPort);
}

/** `mlflow models serve` processes of this test's model and version. */
function servers(version: string): number {
  return execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
    .split('\n')
    .filter((l) => l.includes('models serve') && l.includes(`models:/${mlflow.model}/${version} `)).length;
}

beforeAll(async () => {
  mlflow = await startMlflowFixture(`res-${process.pid}`);
  dir = mkdtempSync(join(tmpdir(), 'promote-resilience-'));
  gatewayPort = await freePort();
  await startGateway();
  plane = localPlane({
    ...{ mlflowUrl: mlflow.server.url, gatewayUrl: `http://127.0.0.1:${gatewayPort}`, gatewayToken: TOKEN },
    stateDir: join(dir, 'servers'),
    pythonEnv: pythonEnv(),
    datasetsDir: join(mlflow.dir, 'datasets'),
    logger,
  });
  await plane.serving.deploy(mlflow.model, '1');
  await plane.serving.setWeights(mlflow.model, { '1': 100 }, 'header:x-entity-id');
  plane.supervisor.close(); // from here on the worker's supervisor owns the servers
  traffic = new TrafficGenerator({
    gatewayUrl: `http://127.0.0.1:${gatewayPort}`,
    model: mlflow.model,
    holdout: plane.datasets.holdout(mlflow.model),
    ratePerSec: 30,
    ingestToken: INGEST_TOKEN,
    logger,
  }).start();
  worker = startWorker();
  connection = await Connection.connect({ address: testAddress() });
  promotions = new Promotions(new Client({ connection, namespace: 'default' }), taskQueue);
  planFile = join(dir, 'plan.yaml');
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
  await new Promise((r) => setTimeout(r, 1500));
}, 300_000);

afterAll(async () => {
  traffic?.stop();
  worker?.kill('SIGTERM');
  await connection?.close();
  await new ModelServerSupervisor({
    stateDir: join(dir, 'servers'),
    trackingUri: mlflow.server.url,
    pythonEnv: pythonEnv(),
    logger,
    monitorMs: 0,
  }).stopAll();
  await gateway?.close();
  await log?.close();
  await mlflow?.server.stop();
});

const route = async () => (await plane.serving.getRoute(mlflow.model))!.weights;

test('promote abort mid-canary (through the CLI) returns all traffic to the champion', async () => {
  expect(cli('start', '--model', mlflow.model, '--version', '2', '--plan', planFile, '--as', 'ci').code).toBe(
    0,
  );
  await waitForStatus(promotions, mlflow.model, (s) => s.trafficPercent === 30, 120_000);
  expect(await route()).toEqual({ '1': 70, '2': 30 });
  expect(cli('abort', mlflow.model, '--as', 'oncall', '--reason', 'paged')).toMatchObject({
    code: 0,
    stdout: 'abort accepted; rolling back\n',
  });
  expect((await promotions.result(mlflow.model)).outcome).toBe('aborted');
  expect(JSON.parse(cli('status', mlflow.model, '--json').stdout)).toMatchObject({
    phase: 'completed',
    outcome: 'aborted',
    trafficPercent: 0,
  });
  expect(await route()).toEqual({ '1': 100 });
  expect(servers('2')).toBe(0);
}, 180_000);

test('a gateway restart mid-canary keeps the weights and the traffic flowing', async () => {
  expect(cli('start', '--model', mlflow.model, '--version', '2', '--plan', planFile, '--as', 'ci').code).toBe(
    0,
  );
  await waitForStatus(promotions, mlflow.model, (s) => s.trafficPercent === 30, 120_000);
  await gateway.close();
  await log.close();
  await startGateway();
  expect(await route()).toEqual({ '1': 70, '2': 30 });
  const holdout = plane.datasets.holdout(mlflow.model);
  const features = holdout.columns.filter((c) => c !== 'entity_id' && c !== 'label');
  const served = new Set<string>();
  for (let i = 0; i < 60; i++) {
    const response = await fetch(`http://127.0.0.1:${gatewayPort}/models/${mlflow.model}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-entity-id': `probe-${i}` },
      // Well-formed rows: malformed probes would count as errors of the versions.
      body: invocationBody([holdout.rows[i % holdout.rows.length]!], features),
    });
    served.add(response.headers.get('x-promote-version') ?? '');
  }
  expect([...served].sort()).toEqual(['1', '2']);
  const result = await promotions.result(mlflow.model);
  expect({ outcome: result.outcome, reason: result.reason }).toMatchObject({ outcome: 'succeeded' });
  expect(await route()).toEqual({ '2': 100 });
}, 240_000);

test('the worker killed mid-promotion and restarted finishes it and leaves no duplicate model servers', async () => {
  // Promote whichever of 1 and 2 is not the champion now (both are registered versions).
  const champion = (await plane.registry.getAlias(mlflow.model, 'champion'))!;
  const candidate = champion === '1' ? '2' : '1';
  expect(
    cli('start', '--model', mlflow.model, '--version', candidate, '--plan', planFile, '--as', 'ci').code,
  ).toBe(0);
  await waitForStatus(
    promotions,
    mlflow.model,
    (s) => s.trafficPercent === 30 && s.lastChecks.length > 0,
    120_000,
  );
  worker.kill('SIGKILL');
  await new Promise((r) => worker.once('exit', r));
  worker = startWorker();
  const result = await promotions.result(mlflow.model);
  expect({ outcome: result.outcome, reason: result.reason }).toMatchObject({ outcome: 'succeeded' });
  expect(await route()).toEqual({ [candidate]: 100 });
  expect(await plane.registry.getAlias(mlflow.model, 'champion')).toBe(candidate);
  expect(servers(candidate)).toBe(1);
  expect(servers(champion)).toBe(0);
}, 240_000);

test('a worker killed in the middle of an activity is noticed by its heartbeat timeout, not the 2-minute start-to-close timeout', async () => {
  const champion = (await plane.registry.getAlias(mlflow.model, 'champion'))!;
  const candidate = champion === '1' ? '2' : '1';
  expect(
    cli('start', '--model', mlflow.model, '--version', candidate, '--plan', planFile, '--as', 'ci').code,
  ).toBe(0);
  // The deploy (a model server's start, seconds long) is running on the worker: kill it there.
  const handle = promotions.handle(mlflow.model);
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
  worker.kill('SIGKILL');
  await new Promise((r) => worker.once('exit', r));
  const killedAt = Date.now();
  worker = startWorker();
  // Before activities heartbeated, the lost attempt was retried only after 2 minutes.
  await waitForStatus(promotions, mlflow.model, (s) => s.trafficPercent === 30, 75_000);
  expect(Date.now() - killedAt).toBeLessThan(75_000);
  const result = await promotions.result(mlflow.model);
  expect({ outcome: result.outcome, reason: result.reason }).toMatchObject({ outcome: 'succeeded' });
  expect(servers(candidate)).toBe(1);
  expect(servers(champion)).toBe(0);
}, 240_000);
