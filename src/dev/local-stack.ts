/**
 * The local serving plane for the embedded stack: MLflow (tracking + registry), the models trained
 * and registered if missing, the gateway as its own process (SQLite prediction log, tokens from
 * the data folder) and the model server supervisor, which adopts the servers an earlier run left.
 */
import { join, resolve } from 'node:path';
import type { Logger } from '../common/logger';
import { localPlane, type LocalPlane } from '../worker/local-plane';
import type { RunDir } from './children';
import { startGatewayProcess, type GatewayProcess } from './gateway';
import { pythonEnv, startMlflowServer, trainModels, type MlflowServer } from './mlflow';
import { stackTokens, type StackTokens } from './tokens';

export interface LocalStack {
  mlflow: MlflowServer;
  gateway: GatewayProcess;
  gatewayUrl: string;
  tokens: StackTokens;
  plane: LocalPlane;
  stop(): Promise<void>;
}

export async function startLocalStack(opts: {
  dataDir: string;
  model: string;
  logger: Logger;
  /** Starts the children and records them (pid files) so a crash leaves nothing behind. */
  run: RunDir;
  mlflowPort: number;
  gatewayPort: number;
  say: (line: string) => void;
}): Promise<LocalStack> {
  const dataDir = resolve(opts.dataDir);
  const { say } = opts;
  const stops: (() => Promise<void>)[] = [];
  const stop = async () => {
    for (const s of stops.reverse()) await s().catch(() => undefined);
  };
  try {
    say(`starting MLflow (${join(dataDir, 'mlflow')}, http://127.0.0.1:${opts.mlflowPort})...`);
    const mlflow = await startMlflowServer({
      dataDir: join(dataDir, 'mlflow'),
      port: opts.mlflowPort,
      launcher: opts.run.launch,
    });
    stops.push(() => mlflow.stop());
    say(`training and registering ${opts.model} v1..v4 if missing...`);
    const trained = await trainModels({
      trackingUri: mlflow.url,
      model: opts.model,
      out: join(dataDir, 'datasets', opts.model),
    });
    for (const line of trained.trim().split('\n')) if (line.startsWith(opts.model)) say(`  ${line}`);
    const tokens = stackTokens(dataDir, say);
    say(`starting the gateway (http://127.0.0.1:${opts.gatewayPort})...`);
    const gateway = await startGatewayProcess({
      stateDir: join(dataDir, 'gateway'),
      port: opts.gatewayPort,
      tokens,
      launcher: opts.run.launch,
    });
    stops.push(() => gateway.stop());
    const plane = localPlane({
      mlflowUrl: mlflow.url,
      gatewayUrl: gateway.url,
      gatewayToken: tokens.adminToken,
      stateDir: join(dataDir, 'servers'),
      pythonEnv: pythonEnv(),
      datasetsDir: join(dataDir, 'datasets'),
      logger: opts.logger,
    });
    stops.push(() => plane.supervisor.stopAll());
    // Model servers are detached on purpose (a restarted worker adopts them): say what this start
    // found of an earlier run's.
    const { adopted, gone } = plane.supervisor.reconcile();
    for (const r of adopted)
      say(
        `adopted the model server of ${r.model}/${r.version} (pid ${r.pid}, port ${r.port}) from an earlier run`,
      );
    for (const r of gone)
      say(
        `the model server of ${r.model}/${r.version} from an earlier run (pid ${r.pid}) is gone; the supervisor restarts it`,
      );
    return { mlflow, gateway, gatewayUrl: gateway.url, tokens, plane, stop };
  } catch (err) {
    await stop();
    throw err;
  }
}
