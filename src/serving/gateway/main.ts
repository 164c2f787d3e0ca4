/**
 * The gateway process. Environment:
 *   PROMOTE_GATEWAY_PORT           listen port (default 8780), on PROMOTE_GATEWAY_HOST (default 127.0.0.1)
 *   PROMOTE_GATEWAY_STATE_DIR      route state (default .data/gateway)
 *   PROMOTE_GATEWAY_TOKEN[_FILE]   bearer token of the admin API (required; a file is read once, trimmed)
 *   PROMOTE_INGEST_TOKEN[_FILE]    bearer token of the labels endpoint (required, differs from the admin token)
 *   PROMOTE_PREDICTION_LOG         sqlite:<file> (default sqlite:<state dir>/predictions.db) or a postgres:// URL
 *   PROMOTE_PREDICTION_RETENTION   how long predictions are kept (a duration, default 30d)
 *   PROMOTE_GATEWAY_PROCESSES      processes serving requests (default one per core, at most 8; 1 = a
 *                                  single process; more = a primary and that many workers, cluster.ts)
 */
import cluster from 'node:cluster';
import { createLogger } from '../../common/logger';
import { openGateway, runPrimary, runWorker } from './cluster';
import { readConfig } from './config';

export { openPredictionLog } from './prediction-log';

async function main(): Promise<void> {
  const config = readConfig(process.env);
  if (config.processes > 1) {
    const logger = createLogger(cluster.isPrimary ? 'promote-gateway' : 'promote-gateway-worker');
    if (cluster.isPrimary) runPrimary(config, logger, { processes: config.processes });
    else runWorker(config, logger);
    return;
  }
  const logger = createLogger('promote-gateway');
  const { gateway, log } = openGateway(config, logger);
  const { url } = await gateway.listen(config.port, config.host);
  logger.info({ url, retentionMs: config.retentionMs }, 'gateway listening');
  const stop = () => {
    logger.info('gateway stopping');
    void gateway
      .close()
      .then(() => log.close())
      .catch((err: unknown) => logger.error({ err }, 'gateway did not stop cleanly'))
      .finally(() => process.exit(0));
  };
  process.once('SIGTERM', stop);
  process.once('SIGINT', stop);
}

if (require.main === module) {
  main().catch((err: unknown) => {
    process.stderr.write(`promote-gateway: ${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  });
}
