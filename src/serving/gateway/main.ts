/**
 * The gateway process. Environment:
 *   PROMOTE_GATEWAY_PORT      listen port (default 8780), on PROMOTE_GATEWAY_HOST (default 127.0.0.1)
 *   PROMOTE_GATEWAY_STATE_DIR route state (default .data/gateway)
 *   PROMOTE_GATEWAY_TOKEN     bearer token of the admin API (required)
 *   PROMOTE_PREDICTION_LOG    sqlite:<file> (default sqlite:<state dir>/predictions.db) or a postgres:// URL
 */
import { join } from 'node:path';
import { createLogger } from '../../common/logger';
import { PostgresPredictionLog, SqlitePredictionLog, type PredictionLog } from './prediction-log';
import { Gateway } from './server';

export function openPredictionLog(spec: string): PredictionLog {
  if (spec.startsWith('postgres://') || spec.startsWith('postgresql://'))
    return new PostgresPredictionLog(spec);
  if (spec.startsWith('sqlite:')) return new SqlitePredictionLog(spec.slice('sqlite:'.length));
  throw new Error(`PROMOTE_PREDICTION_LOG must be sqlite:<file> or a postgres:// URL, got "${spec}"`);
}

async function main(): Promise<void> {
  const logger = createLogger('promote-gateway');
  const token = process.env.PROMOTE_GATEWAY_TOKEN;
  if (!token) throw new Error('PROMOTE_GATEWAY_TOKEN is required (the admin API bearer token)');
  const stateDir = process.env.PROMOTE_GATEWAY_STATE_DIR ?? '.data/gateway';
  const log = openPredictionLog(
    process.env.PROMOTE_PREDICTION_LOG ?? `sqlite:${join(stateDir, 'predictions.db')}`,
  );
  const gateway = new Gateway({ stateDir, log, adminToken: token, logger });
  const { url } = await gateway.listen(
    Number(process.env.PROMOTE_GATEWAY_PORT ?? 8780),
    process.env.PROMOTE_GATEWAY_HOST ?? '127.0.0.1',
  );
  logger.info({ url }, 'gateway listening');
  const stop = () => {
    logger.info('gateway stopping');
    void gateway
      .close()
      .then(() => log.close())
      .then(() => process.exit(0));
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
