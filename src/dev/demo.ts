/**
 * The demo: on the embedded stack, promotes fraud-detector v2 (a real improvement) through
 * shadow, canary steps and a second user's approval to success; v3 (errors under load) is rolled
 * back by a guardrail; v4 (incompatible input signature) is stopped by a gate before any traffic.
 * Until the serving plane lands, the models are the in-process plane's simulated versions.
 */
import { rmSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { Promotions } from '../client/promotions';
import { loadPlanFile } from '../plan/load';
import type { InProcessPlane } from '../providers/inprocess/plane';
import type { PromotionStatus } from '../workflows/types';
import { startDevStack, type DevStack } from './stack';

export const DEMO_MODEL = 'fraud-detector';
const FEATURES = [
  { name: 'amount', type: 'double' },
  { name: 'merchant_risk', type: 'double' },
  { name: 'account_age_days', type: 'long' },
  { name: 'country', type: 'string' },
];

/** v1 champion; v2 better; v3 errors under load (behaviour.errorRate, the explicit knob); v4 new inputs. */
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

export interface DemoOptions {
  dataDir: string;
  keep: boolean;
}

export async function runDemo(opts: DemoOptions): Promise<number> {
  const dataDir = resolve(opts.dataDir);
  // The demo owns its in-process plane: a fresh one each run, so v1 is the champion again.
  const stateDir = join(dataDir, 'demo-inprocess');
  rmSync(stateDir, { recursive: true, force: true });
  const stack: DevStack = await startDevStack({
    dataDir,
    taskQueue: 'promote-demo',
    trafficRate: 200,
    stateDir,
  });
  const stop = () => {
    say('\nstopping...');
    void stack.stop().then(() => process.exit(130));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
  try {
    seedDemo(stack.plane);
    const promotions = new Promotions(stack.client, 'promote-demo');
    const plan = loadPlanFile(resolve(__dirname, '../../examples/demo.yaml'));
    say(`Temporal UI: ${stack.uiUrl}   (worker on task queue promote-demo; plan examples/demo.yaml)`);
    const results: { version: string; status: PromotionStatus; expected: string }[] = [];
    for (const [version, expected, story] of [
      ['v2', 'succeeded', 'a genuine improvement'],
      ['v3', 'rolled_back', 'fails under load (12% errors)'],
      ['v4', 'failed', 'expects an input the traffic does not carry'],
    ] as const) {
      say(`\n== promoting ${DEMO_MODEL} ${version}: ${story}`);
      say(`$ bin/promote start --model ${DEMO_MODEL} --version ${version} --plan examples/demo.yaml --as ci`);
      const { id } = await promotions.start({ model: DEMO_MODEL, version, plan, startedBy: 'ci' });
      const status = await follow(promotions, id, version, async (s) => {
        say(`  approval needed for step ${s.pendingApproval!.step + 1}; a second user approves:`);
        say(`$ bin/promote approve ${id} --as bob --comment "shadow and 10% look good"`);
        const r = await promotions.vote(id, 'approve', 'bob', 'shadow and 10% look good');
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
    const route = await stack.plane.getRoute(DEMO_MODEL);
    say(
      `traffic now: ${JSON.stringify(route?.weights)}; champion alias: ${await stack.plane.getAlias(DEMO_MODEL, 'champion')}`,
    );
    say(
      `Temporal UI: ${stack.uiUrl}/namespaces/default/workflows?query=PromotionModel%3D%22${DEMO_MODEL}%22`,
    );
    const ok = results.every((r) => r.status.outcome === r.expected);
    if (!ok) say('unexpected outcome: see the decisions above');
    if (opts.keep) {
      say('\nthe stack keeps running (status, list, the UI); Ctrl-C stops it');
      await new Promise(() => undefined);
    }
    return ok ? 0 : 1;
  } finally {
    if (!opts.keep) await stack.stop();
  }
}
