/**
 * `promote dev up`: the embedded stack in the foreground, by default with the local serving plane.
 * Its children (Temporal, MLflow, the gateway) stop with it, even when it is killed; whatever an
 * earlier crashed run left is stopped (or, for model servers, adopted) at the next start, which
 * says so. Ports: see ./ports.ts.
 */
import { join, resolve } from 'node:path';
import { createLogger } from '../common/logger';
import { TrafficGenerator } from '../serving/traffic';
import { addLocalPlane } from '../worker/local-plane';
import { RunDir } from './children';
import { DEMO_MODEL } from './demo';
import { startLocalStack, type LocalStack } from './local-stack';
import { devPorts } from './ports';
import { startDevStack, type DevStack } from './stack';

const say = (line: string) => process.stderr.write(`promote: ${line}\n`);

export async function startDevUp(opts: {
  dataDir: string;
  trafficRate: number;
  inprocess: boolean;
}): Promise<{ summary: string; stop(): Promise<void> }> {
  const taskQueue = process.env.PROMOTE_TASK_QUEUE ?? 'promote';
  const ports = devPorts();
  const run = await RunDir.claim(opts.dataDir, say);
  // Structured logs to a file: the terminal gets human lines only.
  process.env.PROMOTE_LOG_FILE ??= join(resolve(opts.dataDir), 'logs', 'promote.log');
  const logger = createLogger('promote-dev');
  let local: LocalStack | null = null;
  let stack: DevStack | null = null;
  let traffic: TrafficGenerator | null = null;
  let stopped: Promise<void> | null = null;
  const stop = () =>
    (stopped ??= (async () => {
      traffic?.stop();
      await stack?.stop();
      await local?.stop();
      await run.release();
    })());
  const address = ports.temporal === 7233 ? '' : `TEMPORAL_ADDRESS=127.0.0.1:${ports.temporal} `;
  try {
    if (opts.inprocess) {
      stack = await startDevStack({
        dataDir: opts.dataDir,
        taskQueue,
        trafficRate: opts.trafficRate,
        port: ports.temporal,
        uiPort: ports.ui,
        launcher: run.launch,
      });
      return {
        summary: `Temporal at ${stack.address}, UI ${stack.uiUrl}; in-process plane; worker on task queue ${taskQueue}. Ctrl-C stops.`,
        stop,
      };
    }
    local = await startLocalStack({
      dataDir: opts.dataDir,
      model: DEMO_MODEL,
      logger,
      run,
      mlflowPort: ports.mlflow,
      gatewayPort: ports.gateway,
      say,
    });
    const plane = local.plane;
    // The champion serves traffic from the start (version 1 unless an earlier promotion moved it).
    const champion = (await plane.registry.getAlias(DEMO_MODEL, 'champion')) ?? '1';
    await plane.serving.deploy(DEMO_MODEL, champion);
    const route = await plane.serving.getRoute(DEMO_MODEL);
    if (!route) await plane.serving.setWeights(DEMO_MODEL, { [champion]: 100 }, 'header:x-entity-id');
    else for (const version of Object.keys(route.weights)) await plane.serving.deploy(DEMO_MODEL, version);
    traffic = new TrafficGenerator({
      gatewayUrl: local.gatewayUrl,
      model: DEMO_MODEL,
      holdout: plane.datasets.holdout(DEMO_MODEL),
      ratePerSec: opts.trafficRate,
      labelDelayMs: 2000,
      ingestToken: local.tokens.ingestToken,
      logger,
    }).start();
    const l = local;
    stack = await startDevStack({
      dataDir: opts.dataDir,
      taskQueue,
      trafficRate: 0,
      port: ports.temporal,
      uiPort: ports.ui,
      launcher: run.launch,
      extendCatalog: (catalog) => addLocalPlane(catalog, l.plane),
    });
    return {
      summary: [
        `Temporal at ${stack.address}, UI ${stack.uiUrl}; worker on task queue ${taskQueue}`,
        `MLflow ${local.mlflow.url}; gateway ${local.gatewayUrl} (admin token in ${local.tokens.adminTokenFile}, label ingest token in ${local.tokens.ingestTokenFile})`,
        `${DEMO_MODEL}: champion version ${champion}; ${opts.trafficRate} requests/s replayed through the gateway`,
        `structured logs: ${process.env.PROMOTE_LOG_FILE}`,
        `try: ${address}bin/promote start --model ${DEMO_MODEL} --version 2 --plan examples/demo-local.yaml --as ci. Ctrl-C stops everything.`,
      ].join('\n'),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
