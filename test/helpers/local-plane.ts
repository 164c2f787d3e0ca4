/**
 * The local serving plane as the end-to-end tests use it: a real MLflow with the demo models, the
 * gateway (in this process, so a test can restart it), the model-server supervisor, replayed
 * traffic, and the worker as its own process; the `promote` CLI run as a process with the same
 * environment. One definition for every e2e file.
 */
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import pino from 'pino';
import { Promotions } from '../../src/client/promotions';
import { freePort } from '../../src/common/net';
import { pythonEnv } from '../../src/dev/mlflow';
import { SqlitePredictionLog } from '../../src/serving/gateway/prediction-log';
import { Gateway } from '../../src/serving/gateway/server';
import { ModelServerSupervisor } from '../../src/serving/supervisor';
import { TrafficGenerator } from '../../src/serving/traffic';
import { localPlane, type LocalPlane } from '../../src/worker/local-plane';
import { startMlflowFixture, type MlflowFixture } from './mlflow';
import { testAddress } from './stack';

const ROOT = join(__dirname, '../..');
const logger = pino({ level: 'silent' });

export interface LocalPlaneFixture {
  mlflow: MlflowFixture;
  model: string;
  dir: string;
  gatewayPort: number;
  gatewayUrl: string;
  adminToken: string;
  ingestToken: string;
  plane: LocalPlane;
  promotions: Promotions;
  gateway(): Gateway;
  /** Stops the in-process gateway and starts it again on the same port and state. */
  restartGateway(): Promise<void>;
  worker(): ChildProcess;
  /** SIGKILLs the worker process and starts a new one. */
  killWorker(): Promise<void>;
  /** The `promote` CLI as a process with the worker's environment. */
  cli(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }>;
  /** `mlflow models serve` processes of this fixture's model and a version. */
  servers(version: string): number;
  close(): Promise<void>;
}

export async function startLocalPlaneFixture(name: string): Promise<LocalPlaneFixture> {
  const mlflow = await startMlflowFixture(`${name}-${process.pid}`);
  const model = mlflow.model;
  const dir = mkdtempSync(join(tmpdir(), `promote-${name}-`));
  const gatewayPort = await freePort();
  const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
  const adminToken = randomUUID();
  const ingestToken = randomUUID();
  const taskQueue = `${name}-${randomUUID()}`;
  let log: SqlitePredictionLog;
  let gateway: Gateway;
  const startGateway = async () => {
    log = new SqlitePredictionLog(join(dir, 'gateway', 'predictions.db'));
    gateway = new Gateway({ stateDir: join(dir, 'gateway'), log, adminToken, ingestToken, logger });
    await gateway.listen(gatewayPort);
  };
  await startGateway();
  const plane = localPlane({
    mlflowUrl: mlflow.server.url,
    gatewayUrl,
    gatewayToken: adminToken,
    stateDir: join(dir, 'servers'),
    pythonEnv: pythonEnv(),
    datasetsDir: join(mlflow.dir, 'datasets'),
    logger,
  });
  await plane.serving.deploy(model, '1');
  await plane.serving.setWeights(model, { '1': 100 }, 'header:x-entity-id');
  plane.supervisor.close(); // from here on the worker's supervisor owns the servers
  const traffic = new TrafficGenerator({
    gatewayUrl,
    model,
    holdout: plane.datasets.holdout(model),
    ratePerSec: 50,
    ingestToken,
    logger,
  }).start();
  const env = () => ({
    ...process.env,
    TEMPORAL_ADDRESS: testAddress(),
    TEMPORAL_NAMESPACE: 'default',
    PROMOTE_TASK_QUEUE: taskQueue,
    PROMOTE_MLFLOW_URL: mlflow.server.url,
    PROMOTE_GATEWAY_URL: gatewayUrl,
    PROMOTE_GATEWAY_TOKEN: adminToken,
    PROMOTE_PYTHON_ENV: pythonEnv(),
    PROMOTE_DATASETS_DIR: join(mlflow.dir, 'datasets'),
    PROMOTE_SERVERS_DIR: join(dir, 'servers'),
    PROMOTE_STATE_DIR: join(dir, 'inprocess'),
    PROMOTE_WORKFLOW_BUNDLE: process.env.PROMOTE_TEST_BUNDLE,
    LOG_LEVEL: 'warn',
  });
  const spawnWorker = () =>
    spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'src/worker/main.ts')], {
      env: env(),
      stdio: ['ignore', 'ignore', 'inherit'],
    });
  let worker = spawnWorker();
  const connection = await Connection.connect({ address: testAddress() });
  const promotions = new Promotions(new Client({ connection, namespace: 'default' }), taskQueue);
  // Let traffic reach the champion before promotions measure it.
  await new Promise((r) => setTimeout(r, 1500));
  return {
    mlflow,
    model,
    dir,
    gatewayPort,
    gatewayUrl,
    adminToken,
    ingestToken,
    plane,
    promotions,
    gateway: () => gateway,
    restartGateway: async () => {
      await gateway.close();
      await log.close();
      await startGateway();
    },
    worker: () => worker,
    killWorker: async () => {
      worker.kill('SIGKILL');
      await new Promise((r) => worker.once('exit', r));
      worker = spawnWorker();
    },
    // Asynchronous on purpose: the gateway runs in this process, and a CLI command that waits for
    // the worker (recover) would deadlock a synchronous child call.
    cli: (...args: string[]) =>
      new Promise((resolve) => {
        execFile(
          process.execPath,
          ['--import', 'tsx', join(ROOT, 'src/client/main.ts'), ...args],
          { env: env(), encoding: 'utf8' },
          (err, stdout, stderr) =>
            resolve({ code: err ? ((err as { code?: number }).code ?? 1) : 0, stdout, stderr }),
        );
      }),
    servers: (version: string) =>
      execFileSync('ps', ['-eo', 'args'], { encoding: 'utf8' })
        .split('\n')
        .filter((l) => l.includes('models serve') && l.includes(`models:/${model}/${version} `)).length,
    close: async () => {
      traffic.stop();
      worker.kill('SIGTERM');
      await new Promise((r) => (worker.exitCode !== null ? r(undefined) : worker.once('exit', r)));
      await connection.close();
      await new ModelServerSupervisor({
        stateDir: join(dir, 'servers'),
        trackingUri: mlflow.server.url,
        pythonEnv: pythonEnv(),
        logger,
        monitorMs: 0,
      }).stopAll();
      await gateway.close();
      await log.close();
      await mlflow.server.stop();
    },
  };
}
