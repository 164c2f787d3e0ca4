/**
 * The worker process. Environment:
 *   TEMPORAL_ADDRESS, TEMPORAL_NAMESPACE, TEMPORAL_API_KEY, TEMPORAL_TLS_* (Temporal's conventions)
 *   PROMOTE_TASK_QUEUE   task queue (default promote)
 *   PROMOTE_STATE_DIR    where the in-process plane persists its state (default .data/inprocess)
 *   PROMOTE_TRAFFIC_RATE synthetic requests per second per model for the in-process plane (default 0)
 *   PROMOTE_LABEL_DELAY  delay before in-process labels arrive, a duration (default 0s)
 *   PROMOTE_WORKFLOW_BUNDLE a prebuilt workflow bundle (default: bundle src at start)
 *   PROMOTE_MLFLOW_URL, PROMOTE_GATEWAY_URL, PROMOTE_GATEWAY_TOKEN (or PROMOTE_GATEWAY_TOKEN_FILE),
 *   PROMOTE_PYTHON_ENV, PROMOTE_DATASETS_DIR, PROMOTE_SERVERS_DIR  with these set, the local
 *                        serving plane's providers (mlflow, local) too
 *   LOG_LEVEL            pino level (default info)
 * Stops gracefully on SIGTERM/SIGINT: no new tasks, running activities get the grace time.
 */
import { DefaultLogger, Runtime, type LogLevel } from '@temporalio/worker';
import { connectionSettings, connectWorker } from '../common/connection';
import { createLogger } from '../common/logger';
import { readOptionalSecret } from '../common/secret';
import { parseDuration } from '../plan/duration';
import { DEFAULT_TASK_QUEUE } from '../workflows/search';
import { inProcessStack } from './composition';
import { addLocalPlane, localPlane } from './local-plane';
import { createPromotionWorker } from './worker';

const logger = createLogger('promote-worker');

function installRuntimeLogger(): void {
  // Route the SDK's logs (worker, workflow and activity loggers) through pino.
  const level = (process.env.LOG_LEVEL ?? 'info').toUpperCase() as LogLevel;
  Runtime.install({
    logger: new DefaultLogger(level === ('FATAL' as LogLevel) ? 'ERROR' : level, (entry) => {
      const method =
        entry.level === 'TRACE'
          ? 'trace'
          : (entry.level.toLowerCase() as 'debug' | 'info' | 'warn' | 'error');
      logger[method]({ ...entry.meta, sdk: true }, entry.message);
    }),
  });
}

async function main(): Promise<void> {
  installRuntimeLogger();
  const settings = connectionSettings();
  const taskQueue = process.env.PROMOTE_TASK_QUEUE ?? DEFAULT_TASK_QUEUE;
  const stack = inProcessStack({
    stateDir: process.env.PROMOTE_STATE_DIR ?? '.data/inprocess',
    logger,
    traffic: {
      ratePerSec: Number(process.env.PROMOTE_TRAFFIC_RATE ?? '0'),
      labelDelayMs: parseDuration(process.env.PROMOTE_LABEL_DELAY ?? '0s'),
    },
  });
  const { PROMOTE_MLFLOW_URL: mlflowUrl, PROMOTE_GATEWAY_URL: gatewayUrl } = process.env;
  const gatewayToken = readOptionalSecret(process.env, 'PROMOTE_GATEWAY_TOKEN', "the gateway's admin token");
  if (mlflowUrl && gatewayUrl && gatewayToken) {
    const plane = localPlane({
      mlflowUrl,
      gatewayUrl,
      gatewayToken,
      stateDir: process.env.PROMOTE_SERVERS_DIR ?? '.data/servers',
      pythonEnv: process.env.PROMOTE_PYTHON_ENV ?? '',
      datasetsDir: process.env.PROMOTE_DATASETS_DIR ?? '.data/datasets',
      logger,
    });
    addLocalPlane(stack.catalog, plane);
    logger.info({ mlflowUrl, gatewayUrl }, 'local serving plane providers enabled');
  }
  const connection = await connectWorker(settings);
  const bundle = process.env.PROMOTE_WORKFLOW_BUNDLE;
  const worker = await createPromotionWorker({
    connection,
    namespace: settings.namespace,
    taskQueue,
    catalog: stack.catalog,
    ...(bundle ? { workflowBundle: { codePath: bundle } } : {}),
  });
  logger.info(
    { address: settings.options.address, namespace: settings.namespace, taskQueue },
    'worker started',
  );
  await worker.run();
  stack.driver?.stop();
  await connection.close();
  logger.info('worker stopped');
}

main().catch((err: unknown) => {
  logger.error({ err }, 'worker failed');
  process.exit(1);
});
