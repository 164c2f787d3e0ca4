/**
 * The trial's stack, each part its own process on a free loopback port in a fresh data folder:
 * the Temporal dev server (SQLite file, so a restart keeps the workflows), MLflow with the demo
 * models, the gateway (dist/serving/gateway/main.js, token files), the worker
 * (dist/worker/main.js with the local plane's environment), and replayed traffic with delayed
 * labels from this process. Every child runs in its own process group under a pid file
 * (src/dev/children.ts), is killed and restarted by group id, and stops with the harness.
 */
import type { ChildProcess } from 'node:child_process';
import { closeSync, mkdirSync, openSync, readSync, statSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger } from '@temporalio/worker';
import pino from 'pino';
import { freePort } from '../../src/common/net';
import { groupAlive } from '../../src/common/processes';
import { RunDir, type Launched } from '../../src/dev/children';
import { startMlflowServer, trainModels } from '../../src/dev/mlflow';
import { startDevServer } from '../../src/dev/temporal';
import { stackTokens, type StackTokens } from '../../src/dev/tokens';
import { Datasets } from '../../src/providers/local/datasets';
import { GatewayClient } from '../../src/providers/local/gateway-client';
import { MlflowRegistry } from '../../src/providers/mlflow/registry';
import { TrafficGenerator } from '../../src/serving/traffic';
import { Lock } from './lock';
import { localPlane } from '../../src/worker/local-plane';

export const ROOT = resolve(__dirname, '../..');
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface StackOptions {
  dataDir: string;
  model: string;
  taskQueue: string;
  trafficRate: number;
  labelDelayMs: number;
  pythonEnv: string;
  temporalCli: string;
  say: (line: string) => void;
}

/** A child that exited without the harness asking it to. */
export interface UnexpectedExit {
  what: 'temporal' | 'mlflow' | 'gateway' | 'worker';
  at: string;
  how: string;
}

/** Processes the harness kills or stops on purpose: their exit is no finding. */
const intendedExits = new WeakSet<ChildProcess>();

/** Kills a launched child's whole process group with SIGKILL and waits (bounded) until it is gone. */
async function killGroup(launched: Launched): Promise<void> {
  intendedExits.add(launched.process);
  const pid = launched.process.pid;
  if (pid !== undefined && groupAlive(pid)) {
    try {
      process.kill(-pid, 'SIGKILL');
    } catch {
      // gone meanwhile
    }
    for (let i = 0; i < 100 && groupAlive(pid); i++) await sleep(100);
  }
  await launched.stop(1000); // forgets it and removes its pid file
}

/** The services of the stack, each its own process (group). */
export type Service = 'temporal' | 'mlflow' | 'gateway' | 'worker';

/** A running child: its process and how to stop it (SIGTERM to its group, then SIGKILL). */
interface Running {
  process: ChildProcess;
  stop(): Promise<void>;
}

/**
 * One service's current process. Starts, kills and crash restarts of a service are serialised by
 * its lock, so a fault's restart and a restart after a crash never both start one.
 */
class Slot {
  current: Running | null = null;
  readonly lock = new Lock();
}

const live = (p: ChildProcess) => p.exitCode === null && p.signalCode === null;

export class TrialStack {
  readonly ports = { temporal: 0, mlflow: 0, gateway: 0 };
  readonly unexpected: UnexpectedExit[] = [];
  tokens!: StackTokens;
  client!: Client;
  registry!: MlflowRegistry;
  gatewayClient!: GatewayClient;
  traffic: TrafficGenerator | null = null;
  private run!: RunDir;
  private readonly slots: Record<Service, Slot> = {
    temporal: new Slot(),
    mlflow: new Slot(),
    gateway: new Slot(),
    worker: new Slot(),
  };
  /** Every worker process ever started, to check that never more than one runs. */
  private readonly workers: ChildProcess[] = [];
  private connection: Connection | null = null;
  private bundlePath = '';
  private stopping = false;

  private constructor(readonly o: StackOptions) {}

  get mlflowUrl(): string {
    return `http://127.0.0.1:${this.ports.mlflow}`;
  }
  get gatewayUrl(): string {
    return `http://127.0.0.1:${this.ports.gateway}`;
  }
  get temporalAddress(): string {
    return `127.0.0.1:${this.ports.temporal}`;
  }
  get serversDir(): string {
    return join(this.o.dataDir, 'servers');
  }
  get datasetsDir(): string {
    return join(this.o.dataDir, 'datasets');
  }

  static async start(o: StackOptions): Promise<TrialStack> {
    const s = new TrialStack(o);
    mkdirSync(o.dataDir, { recursive: true });
    s.run = await RunDir.claim(o.dataDir, o.say);
    s.ports.temporal = await freePort();
    s.ports.mlflow = await freePort();
    s.ports.gateway = await freePort();
    try {
      await s.start('temporal');
      s.connection = await Connection.connect({ address: s.temporalAddress });
      s.client = new Client({ connection: s.connection, namespace: 'default' });
      o.say(`bundling the workflows (dist/workflows) once for every worker start...`);
      const { code } = await bundleWorkflowCode({
        workflowsPath: join(ROOT, 'dist/workflows/index.js'),
        logger: new DefaultLogger('WARN'),
      });
      s.bundlePath = join(o.dataDir, 'workflows-bundle.js');
      writeFileSync(s.bundlePath, code);
      await s.start('mlflow');
      o.say(`training and registering ${o.model} v1..v4 (python/train.py)...`);
      const trained = await trainModels({
        trackingUri: s.mlflowUrl,
        model: o.model,
        out: join(s.datasetsDir, o.model),
      });
      for (const line of trained.trim().split('\n')) if (line.startsWith(o.model)) o.say(`  ${line}`);
      s.tokens = stackTokens(o.dataDir, o.say);
      s.registry = new MlflowRegistry(s.mlflowUrl);
      s.gatewayClient = new GatewayClient(s.gatewayUrl, s.tokens.adminToken);
      await s.start('gateway');
      await s.serveChampion();
      s.traffic = new TrafficGenerator({
        gatewayUrl: s.gatewayUrl,
        model: o.model,
        holdout: new Datasets(s.datasetsDir).holdout(o.model),
        ratePerSec: o.trafficRate,
        labelDelayMs: o.labelDelayMs,
        ingestToken: s.tokens.ingestToken,
        logger: pino({ level: 'silent' }),
      }).start();
      await s.start('worker');
      return s;
    } catch (err) {
      await s.stop();
      throw err;
    }
  }

  /** The champion (version 1 after training) deployed and serving 100% before the first promotion. */
  private async serveChampion(): Promise<void> {
    const plane = localPlaneFor(this);
    const champion = (await this.registry.getAlias(this.o.model, 'champion')) ?? '1';
    await plane.serving.deploy(this.o.model, champion);
    await plane.serving.setWeights(this.o.model, { [champion]: 100 }, 'header:x-entity-id');
    // From here on the worker's supervisor owns the model servers (servers.json).
    plane.supervisor.close();
  }

  // ---- lifecycle ----

  /** Starts the service unless it runs; answers the ms it took (0: it was running). */
  start(service: Service): Promise<number> {
    const slot = this.slots[service];
    return slot.lock.run(async () => {
      if (slot.current && live(slot.current.process)) return 0;
      const t0 = Date.now();
      const running = await this.launch(service);
      slot.current = running;
      this.watch(service, running);
      return Date.now() - t0;
    });
  }

  /** `start`, tried again every 2 s until it succeeds (Temporal may be down for a worker) or `withinMs` ends. */
  async startWithin(service: Service, withinMs: number): Promise<number> {
    const deadline = Date.now() + withinMs;
    for (;;) {
      try {
        return await this.start(service);
      } catch (err) {
        if (this.stopping || Date.now() > deadline) throw err;
        this.o.say(`  starting the ${service} failed (${(err as Error).message}); again in 2s`);
        await sleep(2000);
      }
    }
  }

  /** Takes the service down: SIGKILL to its process group, or a stop (SIGTERM, SIGKILL after 10 s). */
  down(service: Service, how: 'kill' | 'stop'): Promise<void> {
    const slot = this.slots[service];
    return slot.lock.run(async () => {
      const running = slot.current;
      slot.current = null;
      if (!running) return;
      intendedExits.add(running.process);
      if (how === 'kill') await killGroup(running);
      else await running.stop();
    });
  }

  running(service: Service): boolean {
    const current = this.slots[service].current;
    return current !== null && live(current.process);
  }

  /** Worker processes alive now (more than one is a harness error). */
  liveWorkers(): number[] {
    return this.workers.filter(live).map((p) => p.pid ?? 0);
  }

  /** A child that exits on its own is recorded and started again (once per crash). */
  private watch(service: Service, running: Running): void {
    running.process.once('exit', (code, signal) => {
      if (this.stopping || intendedExits.has(running.process)) return;
      const how = `exited with ${signal ?? code}`;
      this.unexpected.push({ what: service, at: new Date().toISOString(), how });
      this.o.say(`UNEXPECTED: the ${service} ${how}; restarting it`);
      const slot = this.slots[service];
      void slot.lock
        .run(async () => {
          if (slot.current !== running) return false; // already replaced
          slot.current = null;
          await running.stop().catch(() => undefined);
          return true;
        })
        .then((crashed) => (crashed ? this.startWithin(service, 120_000) : 0))
        .catch((err: unknown) => this.o.say(`could not restart the ${service}: ${(err as Error).message}`));
    });
  }

  private launch(service: Service): Promise<Running> {
    switch (service) {
      case 'temporal':
        return this.launchTemporal();
      case 'mlflow':
        return startMlflowServer({
          dataDir: join(this.o.dataDir, 'mlflow'),
          port: this.ports.mlflow,
          launcher: this.run.launch,
        });
      case 'gateway':
        return this.launchGateway();
      case 'worker':
        return this.launchWorker();
    }
  }

  private async launchTemporal(): Promise<Running> {
    const dir = join(this.o.dataDir, 'temporal');
    mkdirSync(dir, { recursive: true });
    return startDevServer({
      cliPath: this.o.temporalCli,
      port: this.ports.temporal,
      dbFile: join(dir, 'temporal.db'),
      logFile: join(dir, 'server.log'),
      launcher: this.run.launch,
    });
  }

  /** Waits (bounded) until `ready`; a child that exits or stays unready is killed and it throws. */
  private async readyOrKill(
    launched: Launched,
    what: string,
    timeoutMs: number,
    ready: () => Promise<boolean>,
  ): Promise<Running> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      if (await ready()) return { process: launched.process, stop: () => launched.stop() };
      if (!live(launched.process) || Date.now() > deadline) {
        intendedExits.add(launched.process);
        await killGroup(launched);
        throw new Error(`the ${what} did not start`);
      }
      await sleep(100);
    }
  }

  private launchGateway(): Promise<Running> {
    const stateDir = join(this.o.dataDir, 'gateway');
    mkdirSync(stateDir, { recursive: true, mode: 0o700 });
    const log = openSync(join(stateDir, 'gateway.log'), 'a');
    const env: NodeJS.ProcessEnv = {
      ...baseEnv(),
      LOG_LEVEL: 'info',
      PROMOTE_GATEWAY_PORT: String(this.ports.gateway),
      PROMOTE_GATEWAY_HOST: '127.0.0.1',
      PROMOTE_GATEWAY_STATE_DIR: stateDir,
      PROMOTE_PREDICTION_LOG: `sqlite:${join(stateDir, 'predictions.db')}`,
      PROMOTE_GATEWAY_TOKEN_FILE: this.tokens.adminTokenFile,
      PROMOTE_INGEST_TOKEN_FILE: this.tokens.ingestTokenFile,
    };
    const launched = this.run.launch({
      name: 'gateway',
      label: 'gateway',
      command: process.execPath,
      args: [join(ROOT, 'dist/serving/gateway/main.js')],
      env,
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    return this.readyOrKill(launched, `gateway (see ${stateDir}/gateway.log)`, 30_000, () =>
      fetch(`${this.gatewayUrl}/health`, { signal: AbortSignal.timeout(1000) }).then(
        (r) => r.ok,
        () => false,
      ),
    );
  }

  /** The environment of the worker and of the CLI: Temporal, task queue, the local plane. */
  env(): NodeJS.ProcessEnv {
    return {
      ...baseEnv(),
      TEMPORAL_ADDRESS: this.temporalAddress,
      TEMPORAL_NAMESPACE: 'default',
      PROMOTE_TASK_QUEUE: this.o.taskQueue,
      PROMOTE_MLFLOW_URL: this.mlflowUrl,
      PROMOTE_GATEWAY_URL: this.gatewayUrl,
      PROMOTE_GATEWAY_TOKEN: this.tokens.adminToken,
      PROMOTE_PYTHON_ENV: this.o.pythonEnv,
      PROMOTE_DATASETS_DIR: this.datasetsDir,
      PROMOTE_SERVERS_DIR: this.serversDir,
      PROMOTE_STATE_DIR: join(this.o.dataDir, 'inprocess'),
      PROMOTE_WORKFLOW_BUNDLE: this.bundlePath,
    };
  }

  /** Starts the worker; ready once it logs "worker started" (at most 60 s). */
  private launchWorker(): Promise<Running> {
    const logFile = join(this.o.dataDir, 'worker.log');
    const log = openSync(logFile, 'a');
    const from = statSync(logFile).size;
    const launched = this.run.launch({
      name: 'worker',
      label: 'worker',
      command: process.execPath,
      args: [join(ROOT, 'dist/worker/main.js')],
      env: { ...this.env(), LOG_LEVEL: 'info' },
      stdio: ['ignore', log, log],
    });
    closeSync(log);
    this.workers.push(launched.process);
    return this.readyOrKill(launched, `worker (see ${logFile})`, 60_000, () =>
      Promise.resolve(logSince(logFile, from).includes('"worker started"')),
    );
  }

  /** Stops everything this harness started: traffic, worker, gateway, MLflow, Temporal. */
  async stop(): Promise<void> {
    this.stopping = true;
    this.traffic?.stop();
    await this.connection?.close().catch(() => undefined);
    await this.run?.release();
  }
}

/** The local plane's providers for this stack (the harness's own reads and the initial deploy). */
export function localPlaneFor(s: TrialStack) {
  return localPlane({
    mlflowUrl: s.mlflowUrl,
    gatewayUrl: s.gatewayUrl,
    gatewayToken: s.tokens.adminToken,
    stateDir: s.serversDir,
    pythonEnv: s.o.pythonEnv,
    datasetsDir: s.datasetsDir,
    logger: pino({ level: 'silent' }),
  });
}

/** The harness's environment without Temporal or promote settings (each child gets its own). */
function baseEnv(): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env))
    if (!k.startsWith('TEMPORAL_') && !k.startsWith('PROMOTE_') && k !== 'MLFLOW_TRACKING_URI') env[k] = v;
  return env;
}

/** What was appended to a file after `offset` (at most 1 MiB). */
function logSince(file: string, offset: number): string {
  const size = statSync(file).size;
  const length = Math.min(size - offset, 1 << 20);
  if (length <= 0) return '';
  const fd = openSync(file, 'r');
  try {
    const buffer = Buffer.alloc(length);
    readSync(fd, buffer, 0, length, offset);
    return buffer.toString('utf8');
  } finally {
    closeSync(fd);
  }
}
