/**
 * The local serving plane for the embedded stack: MLflow (tracking + registry), the models trained
 * and registered if missing, the gateway (SQLite prediction log) and the model server supervisor.
 */
import { join, resolve } from 'node:path';
import type { Logger } from '../common/logger';
import { SqlitePredictionLog } from '../serving/gateway/prediction-log';
import { Gateway } from '../serving/gateway/server';
import { localPlane, type LocalPlane } from '../worker/local-plane';
import { pythonEnv, startMlflowServer, trainModels, type MlflowServer } from './mlflow';

export interface LocalStack {
  mlflow: MlflowServer;
  gateway: Gateway;
  gatewayUrl: string;
  gatewayToken: string;
  /** Bearer token of the gateway's labels endpoint. */
  ingestToken: string;
  plane: LocalPlane;
  stop(): Promise<void>;
}

export async function startLocalStack(opts: {
  dataDir: string;
  model: string;
  logger: Logger;
  mlflowPort?: number;
  gatewayPort?: number;
}): Promise<LocalStack> {
  const dataDir = resolve(opts.dataDir);
  const say = (line: string) => process.stderr.write(`promote: ${line}\n`);
  say(`starting MLflow (${join(dataDir, 'mlflow')}, http://127.0.0.1:${opts.mlflowPort ?? 5050})...`);
  const mlflow = await startMlflowServer({ dataDir: join(dataDir, 'mlflow'), port: opts.mlflowPort ?? 5050 });
  say(`training and registering ${opts.model} v1..v4 if missing...`);
  const trained = await trainModels({
    trackingUri: mlflow.url,
    model: opts.model,
    out: join(dataDir, 'datasets', opts.model),
  });
  for (const line of trained.trim().split('\n')) if (line.startsWith(opts.model)) say(`  ${line}`);
  const log = new SqlitePredictionLog(join(dataDir, 'gateway', 'predictions.db'));
  const gatewayToken = process.env.PROMOTE_GATEWAY_TOKEN ?? 'promote-dev-token';
  const ingestToken = process.env.PROMOTE_INGEST_TOKEN ?? 'promote-dev-ingest-token';
  const gateway = new Gateway({
    stateDir: join(dataDir, 'gateway'),
    log,
    adminToken: gatewayToken,
    ingestToken,
    logger: opts.logger,
  });
  const { url: gatewayUrl } = await gateway.listen(opts.gatewayPort ?? 8780);
  const plane = localPlane({
    mlflowUrl: mlflow.url,
    gatewayUrl,
    gatewayToken,
    stateDir: join(dataDir, 'servers'),
    pythonEnv: pythonEnv(),
    datasetsDir: join(dataDir, 'datasets'),
    logger: opts.logger,
  });
  return {
    mlflow,
    gateway: gateway,
    gatewayUrl,
    gatewayToken,
    ingestToken,
    plane,
    stop: async () => {
      await plane.supervisor.stopAll();
      await gateway.close();
      await log.close();
      await mlflow.stop();
    },
  };
}
