/**
 * The embedded default stack: the Temporal dev server (persistent SQLite file, UI on :8233) and a
 * worker with the in-process plane, in one foreground process. Reuses a Temporal server that is
 * already listening at the address instead of starting a second one.
 */
import { join, resolve } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import { createLogger } from '../common/logger';
import { inProcessStack, type InProcessStack } from '../worker/composition';
import { createPromotionWorker } from '../worker/worker';
import type { Launcher } from './children';
import { ensureSearchAttributes, startDevServer, type DevServer } from './temporal';

export interface DevStackOptions {
  dataDir: string;
  port?: number;
  uiPort?: number;
  taskQueue: string;
  trafficRate: number;
  /** In-process plane state folder; default <dataDir>/inprocess. */
  stateDir?: string;
  /** Adds providers (e.g. the local serving plane) to the worker's catalog before it starts. */
  extendCatalog?: (catalog: InProcessStack['catalog']) => void;
  /** How the Temporal dev server is started (the embedded stack records it in a pid file). */
  launcher?: Launcher;
}

export interface DevStack extends InProcessStack {
  address: string;
  uiUrl: string;
  server: DevServer | null;
  client: Client;
  worker: Worker;
  stop(): Promise<void>;
}

async function reachable(address: string): Promise<Connection | null> {
  try {
    const connection = await Connection.connect({ address, connectTimeout: '1s' });
    await connection.workflowService.getSystemInfo({});
    return connection;
  } catch {
    return null;
  }
}

export async function startDevStack(opts: DevStackOptions): Promise<DevStack> {
  const logger = createLogger('promote-dev');
  Runtime.install({ logger: new DefaultLogger('WARN') });
  const port = opts.port ?? 7233;
  const uiPort = opts.uiPort ?? 8233;
  const address = `127.0.0.1:${port}`;
  let server: DevServer | null = null;
  let connection = await reachable(address);
  if (connection) {
    logger.info({ address }, 'using the Temporal server already running');
    await ensureSearchAttributes(connection, 'default');
  } else {
    const cliPath = process.env.TEMPORAL_CLI_PATH;
    if (!cliPath)
      throw new Error('TEMPORAL_CLI_PATH is not set (bin/promote sets it after installing the Temporal CLI)');
    const dbFile = resolve(opts.dataDir, 'temporal', 'temporal.db');
    process.stderr.write(`promote: starting the Temporal dev server (${dbFile}, UI on :${uiPort})...\n`);
    server = await startDevServer({
      cliPath,
      port,
      uiPort,
      dbFile,
      logFile: join(opts.dataDir, 'temporal', 'server.log'),
      launcher: opts.launcher,
    });
    connection = await Connection.connect({ address });
  }
  const stack = inProcessStack({
    stateDir: opts.stateDir ?? join(opts.dataDir, 'inprocess'),
    logger,
    traffic: { ratePerSec: opts.trafficRate },
  });
  opts.extendCatalog?.(stack.catalog);
  const native = await NativeConnection.connect({ address });
  const worker = await createPromotionWorker({
    connection: native,
    namespace: 'default',
    taskQueue: opts.taskQueue,
    catalog: stack.catalog,
    shutdownGraceTime: '5s',
    // A prebuilt bundle (as for the worker process) saves bundling the workflows at every start.
    ...(process.env.PROMOTE_WORKFLOW_BUNDLE
      ? { workflowBundle: { codePath: process.env.PROMOTE_WORKFLOW_BUNDLE } }
      : {}),
  });
  const running = worker.run();
  const client = new Client({ connection, namespace: 'default' });
  let stopped = false;
  return {
    ...stack,
    address,
    uiUrl: server?.uiUrl ?? `http://localhost:${uiPort}`,
    server,
    client,
    worker,
    stop: async () => {
      if (stopped) return;
      stopped = true;
      stack.driver?.stop();
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running.catch(() => undefined);
      await native.close();
      await connection.close();
      await server?.stop();
    },
  };
}
