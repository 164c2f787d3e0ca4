/**
 * The demo, on the embedded stack, unattended: promotes fraud-detector's improvement through
 * shadow, canary steps and a second user's approval to success; the regression (errors under load)
 * is rolled back by a guardrail; the version with an incompatible input signature is stopped by a
 * gate before any live traffic. By default on the local serving plane (MLflow, one model server per
 * version, the gateway, live HTTP traffic replayed from the holdout); `--inprocess` runs the same
 * story on the in-process simulated plane.
 */
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Promotions } from '../client/promotions';
import { createLogger } from '../common/logger';
import { loadPlanFile } from '../plan/load';
import type { InProcessPlane } from '../providers/inprocess/plane';
import { TrafficGenerator } from '../serving/traffic';
import { addLocalPlane } from '../worker/local-plane';
import type { PromotionStatus } from '../workflows/types';
import { RunDir } from './children';
import { startLocalStack, type LocalStack } from './local-stack';
import { devPorts } from './ports';
import { startDevStack, type DevStack } from './stack';

export const DEMO_MODEL = 'fraud-detector';
const FEATURES = [
  { name: 'amount', type: 'double' },
  { name: 'merchant_risk', type: 'double' },
  { name: 'account_age_days', type: 'long' },
  { name: 'country', type: 'string' },
];

/** In-process versions: v1 champion; v2 better; v3 errors under load (behaviour.errorRate); v4 new inputs. */
export function seedDemo(plane: InProcessPlane): void {
  const base = { model: DEMO_MODEL, holdoutRows: 4000 };
  plane.registerVersion({
    ...base,
    version: 'v1',
    inputs: FEATURES,
    offline: { auc: 0.85, log_loss: 0.41 },
    behaviour: { signal: 1.4, latencyMs: 9 },
  });
  plane.registerVersion({
    ...base,
    version: 'v2',
    inputs: FEATURES,
    offline: { auc: 0.88, log_loss: 0.37 },
    behaviour: { signal: 1.8, latencyMs: 8 },
  });
  plane.registerVersion({
    ...base,
    version: 'v3',
    inputs: FEATURES,
    offline: { auc: 0.87, log_loss: 0.39 },
    behaviour: { signal: 1.7, latencyMs: 12, errorRate: 0.12 },
  });
  plane.registerVersion({
    ...base,
    version: 'v4',
    inputs: [...FEATURES.slice(0, 3), { name: 'device_fingerprint', type: 'string' }],
    offline: { auc: 0.9, log_loss: 0.35 },
  });
  void plane.setAlias(DEMO_MODEL, 'champion', 'v1');
  plane.initRoute(DEMO_MODEL, 'v1');
}

const say = (line: string) => process.stdout.write(`${line}\n`);

async function follow(
  promotions: Promotions,
  id: string,
  version: string,
  onApproval: (s: PromotionStatus) => Promise<void>,
): Promise<PromotionStatus> {
  let shown = 0;
  let asked = -1;
  const show = (s: PromotionStatus) => {
    for (const d of s.decisions.slice(shown)) {
      say(
        `  [${version}] ${d.at.slice(11, 19)} ${d.kind.padEnd(18)} ${d.reason}${d.evidence[0] && d.kind !== 'traffic' ? `  (${d.evidence[0]})` : ''}`,
      );
    }
    shown = s.decisions.length;
  };
  for (;;) {
    const s = await promotions.status(id);
    show(s);
    if (s.phase === 'awaiting_approval' && s.pendingApproval && s.pendingApproval.step !== asked) {
      asked = s.pendingApproval.step;
      await onApproval(s);
    }
    if (s.outcome !== null) {
      // The outcome is decided; wait for the workflow to close (its last notification) too.
      const final = (await promotions.result(id)).status;
      show(final);
      return final;
    }
    await new Promise((r) => setTimeout(r, 500));
  }
}

interface Case {
  version: string;
  expected: string;
  story: string;
}

/** Runs the three promotions and prints the summary; true when every outcome is the expected one. */
async function runStory(
  promotions: Promotions,
  planFile: string,
  cases: Case[],
  uiUrl: string,
  traffic: () => Promise<string>,
): Promise<boolean> {
  const plan = loadPlanFile(resolve(__dirname, '../..', planFile));
  say(`Temporal UI: ${uiUrl}   (worker on task queue promote-demo; plan ${planFile})`);
  // A demo interrupted earlier may have left its promotion running: abort it first.
  const previous = await promotions.status(DEMO_MODEL).catch(() => null);
  if (previous && previous.outcome === null) {
    say(`aborting the promotion left running by an earlier demo (${previous.candidate}, ${previous.phase})`);
    await promotions.control(DEMO_MODEL, 'abort', 'demo', 'demo restarted').catch(() => undefined);
    await promotions.result(DEMO_MODEL).catch(() => undefined);
  }
  const results: { version: string; status: PromotionStatus; expected: string }[] = [];
  for (const { version, expected, story } of cases) {
    say(`\n== promoting ${DEMO_MODEL} ${version}: ${story}`);
    say(`$ bin/promote start --model ${DEMO_MODEL} --version ${version} --plan ${planFile} --as ci`);
    const { id } = await promotions.start({ model: DEMO_MODEL, version, plan, startedBy: 'ci' });
    const status = await follow(promotions, id, version, async (s) => {
      say(`  approval needed for step ${s.pendingApproval!.step + 1}; a second user approves:`);
      say(`$ bin/promote approve ${id} --as bob --comment "shadow and the first step look good"`);
      const r = await promotions.vote(id, 'approve', 'bob', 'shadow and the first step look good');
      say(`  ${r.message}`);
    });
    results.push({ version, status, expected });
  }
  say('\n== summary');
  for (const { version, status } of results) {
    const reached =
      status.step.index >= 0
        ? `reached step ${status.step.index + 1} of ${status.step.total}`
        : 'no live traffic';
    say(
      `${DEMO_MODEL} ${version}: ${status.outcome} (${reached}) - ${status.reason ?? `${version} is the champion`}`,
    );
  }
  say(await traffic());
  say(`Temporal UI: ${uiUrl}/namespaces/default/workflows?query=PromotionModel%3D%22${DEMO_MODEL}%22`);
  const ok = results.every((r) => r.status.outcome === r.expected);
  if (!ok) say('unexpected outcome: see the decisions above');
  return ok;
}

export interface DemoOptions {
  dataDir: string;
  keep: boolean;
  inprocess: boolean;
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const dataDir = resolve(opts.dataDir);
  // Structured logs to a file: the terminal gets human lines only.
  process.env.PROMOTE_LOG_FILE ??= join(dataDir, 'logs', 'promote.log');
  const logger = createLogger('promote-demo');
  const ports = devPorts();
  const note = (line: string) => process.stderr.write(`promote: ${line}\n`);
  const run = await RunDir.claim(dataDir, note);
  let local: LocalStack | null = null;
  let stack: DevStack | null = null;
  let traffic: TrafficGenerator | null = null;
  let stopping: Promise<void> | null = null;
  const stopAll = () =>
    (stopping ??= (async () => {
      traffic?.stop();
      await stack?.stop();
      await local?.stop();
      await run.release();
    })());
  const interrupt = () => {
    say('\nstopping...');
    void stopAll().then(() => process.exit(130));
  };
  process.once('SIGINT', interrupt);
  process.once('SIGTERM', interrupt);
  try {
    let ok: boolean;
    if (opts.inprocess) {
      // The in-process demo owns its plane: a fresh one each run, so v1 is the champion again.
      const stateDir = join(dataDir, 'demo-inprocess');
      rmSync(stateDir, { recursive: true, force: true });
      stack = await startDevStack({
        dataDir,
        taskQueue: 'promote-demo',
        trafficRate: 200,
        stateDir,
        port: ports.temporal,
        uiPort: ports.ui,
        launcher: run.launch,
      });
      seedDemo(stack.plane);
      const cases = [
        { version: 'v2', expected: 'succeeded', story: 'a genuine improvement' },
        { version: 'v3', expected: 'rolled_back', story: 'fails under load (12% errors)' },
        { version: 'v4', expected: 'failed', story: 'expects an input the traffic does not carry' },
      ];
      const plane = stack.plane;
      ok = await runStory(
        new Promotions(stack.client, 'promote-demo'),
        'examples/demo.yaml',
        cases,
        stack.uiUrl,
        async () => {
          const route = await plane.getRoute(DEMO_MODEL);
          return `traffic now: ${JSON.stringify(route?.weights)}; champion alias: ${await plane.getAlias(DEMO_MODEL, 'champion')}`;
        },
      );
    } else {
      local = await startLocalStack({
        dataDir,
        model: DEMO_MODEL,
        logger,
        run,
        mlflowPort: ports.mlflow,
        gatewayPort: ports.gateway,
        say: note,
      });
      const plane = local.plane;
      // Back to the starting point: version 1 is the champion and serves all traffic.
      await plane.registry.setAlias(DEMO_MODEL, 'champion', '1');
      await plane.registry.setAlias(DEMO_MODEL, 'challenger', null);
      await plane.serving.deploy(DEMO_MODEL, '1');
      await plane.serving.setWeights(DEMO_MODEL, { '1': 100 }, 'header:x-entity-id');
      for (const r of plane.supervisor.list(DEMO_MODEL))
        if (r.version !== '1') {
          const was = plane.supervisor.running(r)
            ? `stopped the model server`
            : `forgot the dead model server`;
          await plane.serving.decommission(DEMO_MODEL, r.version);
          note(`${was} of ${r.model}/${r.version} (pid ${r.pid}) left by an earlier run`);
        }
      const generator = (traffic = new TrafficGenerator({
        gatewayUrl: local.gatewayUrl,
        model: DEMO_MODEL,
        holdout: plane.datasets.holdout(DEMO_MODEL),
        ratePerSec: 60,
        labelDelayMs: 2000,
        ingestToken: local.tokens.ingestToken,
        logger,
      }).start());
      say(
        `gateway: ${local.gatewayUrl} (metrics at ${local.gatewayUrl}/metrics); MLflow: ${local.mlflow.url}; traffic: 60 requests/s replayed from the holdout, labels 2s later`,
      );
      const l = local;
      stack = await startDevStack({
        dataDir,
        taskQueue: 'promote-demo',
        trafficRate: 0,
        port: ports.temporal,
        uiPort: ports.ui,
        launcher: run.launch,
        extendCatalog: (catalog) => addLocalPlane(catalog, l.plane),
      });
      const cases = [
        {
          version: '2',
          expected: 'succeeded',
          story: 'logistic regression on all features, a genuine improvement',
        },
        {
          version: '3',
          expected: 'rolled_back',
          story: 'passes offline, but is slow and fails 15% of calls under load',
        },
        {
          version: '4',
          expected: 'failed',
          story: 'expects device_fingerprint, which the traffic does not carry',
        },
      ];
      ok = await runStory(
        new Promotions(stack.client, 'promote-demo'),
        'examples/demo-local.yaml',
        cases,
        stack.uiUrl,
        async () => {
          const route = await plane.serving.getRoute(DEMO_MODEL);
          return `traffic now: ${JSON.stringify(route?.weights)}; champion alias: version ${await plane.registry.getAlias(DEMO_MODEL, 'champion')}; requests sent ${generator.counts.sent}, failed ${generator.counts.failed}; label rows joined ${generator.counts.labelled}`;
        },
      );
      if (!opts.keep) generator.stop();
    }
    if (opts.keep) {
      say('\nthe stack keeps running (status, list, the UI); Ctrl-C stops it');
      await new Promise(() => undefined);
    }
    return ok ? 0 : 1;
  } finally {
    if (!opts.keep) await stopAll();
  }
}
