/** `promote dev up`: the embedded stack in the foreground, by default with the local serving plane. */
import { createLogger } from '../common/logger';
import { TrafficGenerator } from '../serving/traffic';
import { addLocalPlane } from '../worker/local-plane';
import { DEMO_MODEL } from './demo';
import { startLocalStack, type LocalStack } from './local-stack';
import { startDevStack, type DevStack } from './stack';

export async function startDevUp(opts: {
  dataDir: string;
  trafficRate: number;
  inprocess: boolean;
}): Promise<{ summary: string; stop(): Promise<void> }> {
  const taskQueue = process.env.PROMOTE_TASK_QUEUE ?? 'promote';
  if (opts.inprocess) {
    const stack = await startDevStack({ dataDir: opts.dataDir, taskQueue, trafficRate: opts.trafficRate });
    return {
      summary: `Temporal at ${stack.address}, UI ${stack.uiUrl}; in-process plane; worker on task queue ${taskQueue}. Ctrl-C stops.`,
      stop: () => stack.stop(),
    };
  }
  const logger = createLogger('promote-dev');
  let local: LocalStack | null = null;
  let stack: DevStack | null = null;
  let traffic: TrafficGenerator | null = null;
  const stop = async () => {
    traffic?.stop();
    await stack?.stop();
    await local?.stop();
  };
  try {
    local = await startLocalStack({ dataDir: opts.dataDir, model: DEMO_MODEL, logger });
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
      ingestToken: local.ingestToken,
      logger,
    }).start();
    const l = local;
    stack = await startDevStack({
      dataDir: opts.dataDir,
      taskQueue,
      trafficRate: 0,
      extendCatalog: (catalog) => addLocalPlane(catalog, l.plane),
    });
    return {
      summary: [
        `Temporal at ${stack.address}, UI ${stack.uiUrl}; worker on task queue ${taskQueue}`,
        `MLflow ${local.mlflow.url}; gateway ${local.gatewayUrl} (admin token: PROMOTE_GATEWAY_TOKEN or promote-dev-token)`,
        `${DEMO_MODEL}: champion version ${champion}; ${opts.trafficRate} requests/s replayed through the gateway`,
        `try: bin/promote start --model ${DEMO_MODEL} --version 2 --plan examples/demo-local.yaml --as ci. Ctrl-C stops everything.`,
      ].join('\n'),
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
