/**
 * The fourth reproduction, on the real plane and as a user would do it: `temporal workflow
 * terminate` mid-canary. The gateway's lease returns all traffic to the champion by itself and
 * says why; what the promotion left in the registry and on the model servers blocks the next
 * `promote start` (exit 3) until `promote recover` repairs it, idempotently.
 */
import { execFileSync } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startLocalPlaneFixture, type LocalPlaneFixture } from '../helpers/local-plane';
import { testAddress, waitForStatus } from '../helpers/stack';
import { temporalCliPath } from '../helpers/tools';

let f: LocalPlaneFixture;
let planFile: string;

beforeAll(async () => {
  f = await startLocalPlaneFixture('terminate');
  planFile = join(f.dir, 'plan.yaml');
  writeFileSync(
    planFile,
    `registry: { type: mlflow }
serving: { type: local }
metrics: { type: local }
gates: [{ check: feature_schema }]
canary:
  steps:
    - { traffic: 30, bake: 5m }
    - { traffic: 100 }
guardrails: [{ metric: error_rate, max: 0.1, minSamples: 20 }]
analysis: { interval: 2s, lease: 6s, leaseRenewal: 2s }
policy: { thresholds: { block: 0.9, review: 0.6 } }
`,
  );
}, 300_000);

afterAll(async () => f?.close());

const route = async () => (await f.plane.serving.getRoute(f.model))!.weights;

async function until<T>(
  what: string,
  probe: () => Promise<T>,
  ok: (v: T) => boolean,
  ms = 30_000,
): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (ok(v)) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}; last: ${JSON.stringify(v)}`);
    await new Promise((r) => setTimeout(r, 250));
  }
}

test('terminate mid-canary: the lease returns traffic, start is refused, recover repairs the rest', async () => {
  expect(
    (await f.cli('start', '--model', f.model, '--version', '2', '--plan', planFile, '--as', 'ci')).code,
  ).toBe(0);
  await waitForStatus(f.promotions, f.model, (s) => s.trafficPercent === 30, 120_000);
  expect(await route()).toEqual({ '1': 70, '2': 30 });

  execFileSync(temporalCliPath(), [
    'workflow',
    'terminate',
    '--address',
    testAddress(),
    '--workflow-id',
    `promotion-${f.model}`,
    '--reason',
    'pressed the wrong button',
  ]);

  // Nobody renews the lease any more: within its 6s the gateway goes back to the champion by itself.
  await until('the gateway to return traffic', route, (w) => w['1'] === 100, 20_000);
  const lease = await f.plane.serving.getLease(f.model);
  expect(lease).toMatchObject({ state: 'expired', champion: '1', candidate: '2' });
  expect(lease!.reason).toMatch(/not renewed within 6s/);
  const metrics = await (await fetch(`${f.gatewayUrl}/metrics`)).text();
  expect(metrics).toContain(`promote_gateway_lease_expired_total{model="${f.model}"} 1`);

  // What the terminated promotion left behind, as the issue describes it.
  expect(await f.plane.registry.getAlias(f.model, 'challenger')).toBe('2');
  expect((await f.plane.registry.getVersion(f.model, '2')).tags['promotion.phase']).toBe('staging');
  expect(f.servers('2')).toBe(1);

  const refused = await f.cli(
    'start',
    '--model',
    f.model,
    '--version',
    '2',
    '--plan',
    planFile,
    '--as',
    'ci',
  );
  expect(refused.code).toBe(3);
  expect(refused.stderr).toMatch(/ended TERMINATED in canary with 30% on 2.*promote recover/);

  const recovered = await f.cli('recover', f.model, '--reason', 'terminated by mistake', '--as', 'oncall');
  expect({ code: recovered.code, stderr: recovered.stderr }).toMatchObject({ code: 0, stderr: '' });
  expect(recovered.stdout).toMatch(/fixed registry: challenger -> none/);
  expect(recovered.stdout).toMatch(/fixed serving: 2 decommissioned/);
  expect(recovered.stdout).toMatch(/consistent/);
  expect(await route()).toEqual({ '1': 100 });
  expect(await f.plane.registry.getAlias(f.model, 'challenger')).toBeNull();
  expect(await f.plane.registry.getAlias(f.model, 'champion')).toBe('1');
  expect((await f.plane.registry.getVersion(f.model, '2')).tags).toMatchObject({
    'promotion.phase': 'completed',
    'promotion.outcome': 'recovered',
    'promotion.recovered_by': 'oncall',
  });
  await until(
    'the candidate server to stop',
    () => Promise.resolve(f.servers('2')),
    (n) => n === 0,
  );

  // Idempotent: nothing left to fix but the tags.
  const again = await f.cli('recover', f.model, '--reason', 'checking', '--as', 'oncall', '--json');
  expect(again.code).toBe(0);
  const report = JSON.parse(again.stdout) as {
    consistent: boolean;
    steps: { step: string; changed: boolean }[];
  };
  expect(report.consistent).toBe(true);
  expect(report.steps.filter((s) => s.changed).map((s) => s.step)).toEqual([
    'registry: 2 tagged promotion.outcome=recovered',
  ]);

  // Repaired: a new promotion starts (and is aborted here).
  expect(
    (await f.cli('start', '--model', f.model, '--version', '2', '--plan', planFile, '--as', 'ci')).code,
  ).toBe(0);
  await waitForStatus(f.promotions, f.model, (s) => s.phase !== 'staging', 120_000);
  expect((await f.cli('abort', f.model, '--as', 'oncall', '--reason', 'done checking')).code).toBe(0);
  expect((await f.promotions.result(f.model)).outcome).toBe('aborted');
  expect(await route()).toEqual({ '1': 100 });
}, 300_000);
