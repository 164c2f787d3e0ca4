/**
 * Promotions on the real local plane: MLflow registry, one `mlflow models serve` per version, the
 * gateway routing live HTTP traffic replayed from the holdout, verdicts from what that traffic did.
 */
import { execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { NativeConnection } from '@temporalio/worker';
import pino from 'pino';
import { Promotions } from '../../src/client/promotions';
import { pythonEnv } from '../../src/dev/mlflow';
import { parsePlan } from '../../src/plan/validate';
import { SqlitePredictionLog } from '../../src/serving/gateway/prediction-log';
import { Gateway } from '../../src/serving/gateway/server';
import { TrafficGenerator } from '../../src/serving/traffic';
import { inProcessStack } from '../../src/worker/composition';
import { addLocalPlane, localPlane, type LocalPlane } from '../../src/worker/local-plane';
import { createPromotionWorker } from '../../src/worker/worker';
import { startMlflowFixture, type MlflowFixture } from '../helpers/mlflow';
import { installQuietRuntime, testAddress } from '../helpers/stack';

const TOKEN = 'e2e-token';
const INGEST_TOKEN = 'ingest-token';
const logger = pino({ level: 'silent' });
let mlflow: MlflowFixture;
let gateway: Gateway;
let gatewayUrl: string;
let plane: LocalPlane;
let traffic: TrafficGenerator;
let promotions: Promotions;
let stop: () => Promise<void>;
let taskQueue: string;
let planFile: string;

/** Starts a promotion with the `promote` CLI, as CI would. */
function cliStart(version: string): string {
  const out = execFileSync(
    process.execPath,
    [
      '--import',
      'tsx',
      join(__dirname, '../../src/client/main.ts'),
      'start',
      '--model',
      mlflow.model,
      '--version',
      version,
      '--plan',
      planFile,
      '--as',
      'ci',
      '--json',
    ],
    {
      env: {
        ...process.env,
        TEMPORAL_ADDRESS: testAddress(),
        TEMPORAL_NAMESPACE: 'default',
        PROMOTE_TASK_QUEUE: taskQueue,
      },
      encoding: 'utf8',
    },
  );
  return (JSON.parse(out) as { id: string }).id;
}

const plan = parsePlan({
  registry: { type: 'mlflow' },
  serving: { type: 'local' },
  metrics: { type: 'local' },
  gates: [
    { check: 'feature_schema' },
    { metric: 'auc', min: 0.85, maxRegressionVsChampion: 0.03 },
    // The median: failed requests count at the gate's timeout, so a p99 gate would already stop v3.
    { metric: 'latency_p50_ms', max: 2000 },
  ],
  shadow: { duration: '4s', sampleRate: 1, maxDisagreement: 0.3, minPairs: 20 },
  canary: {
    steps: [
      { traffic: 30, bake: '6s' },
      { traffic: 100, bake: '2s' },
    ],
  },
  guardrails: [{ metric: 'error_rate', max: 0.05, minSamples: 25 }],
  analysis: { interval: '1s', maxExtensions: 1 },
  policy: { thresholds: { review: 0.5, block: 0.9 } },
});

beforeAll(async () => {
  installQuietRuntime();
  mlflow = await startMlflowFixture(`e2e-${process.pid}`);
  const dir = mkdtempSync(join(tmpdir(), 'promote-e2e-'));
  const log = new SqlitePredictionLog(join(dir, 'predictions.db'));
  gateway = new Gateway({
    stateDir: join(dir, 'gateway'),
    log,
    adminToken: TOKEN,
    ingestToken: INGEST_TOKEN,
    logger,
  });
  ({ url: gatewayUrl } = await gateway.listen(0));
  plane = localPlane({
    mlflowUrl: mlflow.server.url,
    gatewayUrl,
    gatewayToken: TOKEN,
    stateDir: join(dir, 'servers'),
    pythonEnv: pythonEnv(),
    datasetsDir: join(mlflow.dir, 'datasets'),
    logger,
  });
  // The champion serves all traffic before any promotion.
  await plane.serving.deploy(mlflow.model, '1');
  await plane.serving.setWeights(mlflow.model, { '1': 100 }, 'header:x-entity-id');
  traffic = new TrafficGenerator({
    gatewayUrl,
    model: mlflow.model,
    holdout: plane.datasets.holdout(mlflow.model),
    ratePerSec: 60,
    ingestToken: INGEST_TOKEN,
    logger,
  }).start();

  const stack = inProcessStack({ stateDir: null, logger });
  addLocalPlane(stack.catalog, plane);
  const native = await NativeConnection.connect({ address: testAddress() });
  const connection = await Connection.connect({ address: testAddress() });
  taskQueue = `e2e-${randomUUID()}`;
  planFile = join(dir, 'plan.json');
  writeFileSync(planFile, JSON.stringify(plan));
  const worker = await createPromotionWorker({
    connection: native,
    namespace: 'default',
    taskQueue,
    catalog: stack.catalog,
    workflowBundle: { codePath: process.env.PROMOTE_TEST_BUNDLE! },
  });
  const running = worker.run();
  promotions = new Promotions(new Client({ connection, namespace: 'default' }), taskQueue);
  stop = async () => {
    traffic.stop();
    worker.shutdown();
    await running;
    await native.close();
    await connection.close();
    await plane.supervisor.stopAll();
    await gateway.close();
    await log.close();
    await mlflow.server.stop();
  };
  await new Promise((r) => setTimeout(r, 1500)); // the gateway sees traffic (and its features)
}, 300_000);

afterAll(async () => stop?.());

async function route() {
  return (await plane.serving.getRoute(mlflow.model))!.weights;
}

test('v2 (better) goes through shadow and canary on live traffic; champion alias and traffic move to it', async () => {
  const id = cliStart('2');
  const result = await promotions.result(id);
  expect({ outcome: result.outcome, reason: result.reason }).toMatchObject({ outcome: 'succeeded' });
  const evidence = result.status.decisions
    .filter((d) => d.kind === 'gate' || d.kind === 'shadow')
    .map((d) => `${d.reason} ${d.evidence.join(' ')}`);
  expect(evidence.join('\n')).toMatch(/gate auc: Pass auc 0\.9\d+ \(champion 0\.9\d+\) within limits/);
  expect(evidence.join('\n')).toMatch(
    /shadow: Pass disagreement [\d.]+ \[[\d.]+, [\d.]+\] at thresholds 0\.5\/0\.9, score PSI [\d.]+ \[[\d.]+, [\d.]+\] \(95% bounds\), \d+ pairs/,
  );
  expect(await plane.registry.getAlias(mlflow.model, 'champion')).toBe('2');
  expect(await plane.registry.getAlias(mlflow.model, 'challenger')).toBeNull();
  expect(await route()).toEqual({ '2': 100 });
  expect(plane.supervisor.list(mlflow.model).map((r) => r.version)).toEqual(['2']);
  expect((await plane.registry.getVersion(mlflow.model, '2')).tags).toMatchObject({
    'promotion.outcome': 'succeeded',
    'promotion.plan_hash': result.status.planHash,
  });
}, 240_000);

test('v3 (errors under load) is rolled back by the error-rate guardrail; traffic returns to the champion and the alias never moves', async () => {
  const id = cliStart('3');
  const result = await promotions.result(id);
  expect({ outcome: result.outcome, reason: result.reason }).toEqual({
    outcome: 'rolled_back',
    reason: 'guardrail error_rate failed at 30% traffic',
  });
  expect(await route()).toEqual({ '2': 100 });
  expect(await plane.registry.getAlias(mlflow.model, 'champion')).toBe('2');
  expect(plane.supervisor.get(mlflow.model, '3')).toBeUndefined();
}, 240_000);

test('v4 (incompatible signature) stops at the schema gate with zero candidate traffic', async () => {
  const id = cliStart('4');
  const result = await promotions.result(id);
  expect({ outcome: result.outcome, reason: result.reason }).toMatchObject({ outcome: 'failed' });
  expect(result.reason).toBe(
    'gate feature_schema Fail: feature_schema incompatible: missing device_fingerprint',
  );
  expect(result.status.decisions.filter((d) => d.kind === 'traffic')).toEqual([]);
  expect(await route()).toEqual({ '2': 100 });
  expect(plane.supervisor.get(mlflow.model, '4')).toBeUndefined();
}, 120_000);
