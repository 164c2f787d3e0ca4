/**
 * Randomized fault trials on the local plane (`npm run trials`; not part of `npm test`).
 *
 * The worker, the gateway, MLflow and the Temporal dev server run as separate processes (see
 * trials/stack.ts); a sequence of promotions of the demo model alternates its two good versions
 * (so each has a different champion), with a bad candidate now and then; faults are injected at
 * moments drawn from a seeded schedule; after every promotion and every recovery the end state is
 * checked (trials/checks.ts). Progress goes to stderr; one JSON summary to stdout at the end.
 * Exit 1 when a check failed, a fault quota was not met or the harness itself hit an error.
 *
 *   npm run trials -- [--seed N] [--worker-kills 20] [--temporal-restarts 3] [--mlflow-outages 3]
 *     [--gateway-kills 3] [--terminates 2] [--mlflow-down 60] [--gateway-down 30] [--bad 2]
 *     [--rate 30] [--max-minutes 45] [--max-promotions 40] [--keep]
 */
import { randomInt } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, hostname, tmpdir, totalmem } from 'node:os';
import { join } from 'node:path';
import { FAULT_KINDS, type FaultKind, type FaultRecord, type PlannedFault } from './trials/faults';
import { Lock } from './trials/lock';
import { runPromotion, type PromotionRecord, type PromotionRun } from './trials/promotion';
import { Rng } from './trials/random';
import { serverGroups, stopModelServers } from './trials/servers';
import { TrialStack } from './trials/stack';

const MODEL = 'trials-fraud';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i < 0) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isFinite(value) || value < 0) throw new Error(`--${name} needs a number`);
  return value;
}

const opts = {
  seed: option('seed', randomInt(1, 2 ** 31 - 1)),
  quota: {
    worker_sigkill: option('worker-kills', 20),
    temporal_restart: option('temporal-restarts', 3),
    mlflow_outage: option('mlflow-outages', 3),
    gateway_kill: option('gateway-kills', 3),
    terminate: option('terminates', 2),
  } satisfies Record<FaultKind, number>,
  mlflowDownMs: option('mlflow-down', 60) * 1000,
  gatewayDownMs: option('gateway-down', 30) * 1000,
  bad: option('bad', 2),
  rate: option('rate', 30),
  maxMs: option('max-minutes', 45) * 60_000,
  maxPromotions: option('max-promotions', 40),
  keep: process.argv.includes('--keep'),
};

/**
 * The plan of every promotion. Short bakes; a 15 s lease renewed every 3 s; guardrails measured
 * every 2 s. maxConsecutiveErrors 20 (40 s of unmeasurable guardrails) rides out the 30 s gateway
 * outage instead of rolling back on it, while a longer outage still rolls back; the lease (15 s)
 * is what protects traffic meanwhile. An MLflow outage does not touch measurements (they come
 * from the gateway): forward steps that need the registry retry through it (15 min budget).
 */
const PLAN = `description: fault trials
registry: { type: mlflow }
serving: { type: local }
metrics: { type: local }
gates:
  - { check: feature_schema }
  - { metric: auc, min: 0.9 }
shadow: { duration: 6s, sampleRate: 1.0, maxDisagreement: 0.3, minPairs: 30 }
canary:
  steps:
    - { traffic: 20, bake: 12s }
    - { traffic: 50, bake: 12s }
    - { traffic: 100, bake: 4s }
guardrails:
  - { metric: error_rate, max: 0.05, minSamples: 20 }
analysis:
  interval: 2s
  maxExtensions: 2
  onInconclusive: rollback
  onNoData: rollback
  maxConsecutiveErrors: 20
  lease: 15s
  leaseRenewal: 3s
watch:
  window: 10s
  interval: 2s
  holdbackPercent: 10
  labels: { metric: auc, maxRegression: 0.1, minLabels: 15, passWhen: not_significant }
policy: { thresholds: { block: 0.9, review: 0.5 } }
`;

const t0 = Date.now();
const say = (line: string) =>
  process.stderr.write(`trials ${((Date.now() - t0) / 1000).toFixed(0).padStart(5)}s: ${line}\n`);

/** The faults of the next promotion, drawn from what is still owed. */
function planFaults(
  rng: Rng,
  slot: FaultKind | null,
  owedKills: number,
  promotionsLeft: number,
): PlannedFault[] {
  const out: PlannedFault[] = [];
  if (slot === 'temporal_restart')
    out.push({ kind: slot, delayMs: rng.between(0, 6000), downMs: rng.between(1000, 10_000) });
  if (slot === 'terminate') out.push({ kind: slot, delayMs: rng.between(0, 8000), downMs: 0 });
  if (slot === 'mlflow_outage')
    out.push({ kind: slot, delayMs: rng.between(0, 30_000), downMs: opts.mlflowDownMs });
  if (slot === 'gateway_kill')
    out.push({ kind: slot, delayMs: rng.between(3000, 50_000), downMs: opts.gatewayDownMs });
  const kills =
    owedKills > 0
      ? Math.min(4, Math.max(1, Math.ceil(owedKills / Math.max(1, promotionsLeft)) + rng.int(0, 1)))
      : rng.next() < 0.3
        ? 1
        : 0;
  for (let i = 0; i < kills; i++)
    out.push({ kind: 'worker_sigkill', delayMs: rng.between(2000, 60_000), downMs: rng.between(500, 4000) });
  return out;
}

interface Summary {
  [key: string]: unknown;
}

async function main(): Promise<number> {
  const rng = new Rng(opts.seed);
  say(`seed ${opts.seed}`);
  const dataDir = mkdtempSync(join(tmpdir(), 'promote-trials-'));
  const pythonEnv = process.env.PROMOTE_PYTHON_ENV;
  const temporalCli = process.env.TEMPORAL_CLI_PATH;
  if (!pythonEnv || !temporalCli)
    throw new Error('PROMOTE_PYTHON_ENV and TEMPORAL_CLI_PATH must be set: run it as npm run trials');
  const planFile = join(dataDir, 'plan.yaml');
  writeFileSync(planFile, PLAN);

  const runs: PromotionRun[] = [];
  const harnessErrors: string[] = [];
  let stack: TrialStack | null = null;
  let interrupted = false;
  let cleanup: { modelServersStopped: number; leftovers: number[] } | null = null;
  const finish = async (): Promise<Summary> => {
    const trafficCounts = stack?.traffic ? { ...stack.traffic.counts } : null;
    const unexpected = stack?.unexpected ?? [];
    const trackingUri = stack?.mlflowUrl;
    if (stack) {
      say('stopping everything the harness started...');
      await stack.stop().catch((err: unknown) => harnessErrors.push(`stop: ${(err as Error).message}`));
    }
    if (trackingUri) {
      const stopped = await stopModelServers(trackingUri);
      cleanup = {
        modelServersStopped: stopped.length,
        leftovers: serverGroups(trackingUri).map((g) => g.pgid),
      };
    }
    return summarize(runs, harnessErrors, unexpected, trafficCounts, cleanup, interrupted, dataDir);
  };

  process.once('SIGINT', () => {
    interrupted = true;
    say('interrupted: stopping everything');
    void finish().then((summary) => {
      process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`, () => process.exit(130));
    });
  });

  try {
    stack = await TrialStack.start({
      dataDir,
      model: MODEL,
      taskQueue: `trials-${opts.seed}`,
      trafficRate: opts.rate,
      labelDelayMs: 2000,
      pythonEnv,
      temporalCli,
      say,
    });
    say(
      `stack up in ${dataDir}: Temporal ${stack.temporalAddress}, MLflow ${stack.mlflowUrl}, gateway ${stack.gatewayUrl}`,
    );
    // Features seen by the gateway feed the feature_schema gate: let some traffic through first.
    await new Promise((r) => setTimeout(r, 3000));

    const big = Object.entries(opts.quota).flatMap(([kind, n]) =>
      kind === 'worker_sigkill' ? [] : Array.from({ length: n }, () => kind as FaultKind),
    );
    const slots: (FaultKind | null)[] = rng.shuffle([...big, null, null]);
    const badAt = new Map<number, string>();
    const badVersions = ['3', '4'];
    for (let i = 0; i < opts.bad; i++) {
      let n = rng.int(2, slots.length + 1);
      while (badAt.has(n)) n++;
      badAt.set(n, badVersions[i % badVersions.length]!);
    }
    const fired: Record<FaultKind, number> = Object.fromEntries(FAULT_KINDS.map((k) => [k, 0])) as Record<
      FaultKind,
      number
    >;
    const quotaMet = () => FAULT_KINDS.every((k) => fired[k] >= opts.quota[k]);
    const workerLock = new Lock();
    let champion = '1';
    for (let n = 1; n <= opts.maxPromotions && !interrupted; n++) {
      if (quotaMet() && slots.length === 0) break;
      if (Date.now() - t0 > opts.maxMs - 4 * 60_000) {
        say('time budget nearly spent: no further promotions');
        break;
      }
      const slot = slots.shift() ?? null;
      const bad = badAt.get(n);
      const candidate = bad ?? (champion === '1' ? '2' : '1');
      const planned = planFaults(
        rng,
        slot,
        opts.quota.worker_sigkill - fired.worker_sigkill,
        Math.max(1, slots.length + 1),
      );
      const run = await runPromotion(
        stack,
        {
          n,
          model: MODEL,
          candidate,
          bad: bad !== undefined,
          planFile,
          faults: planned,
          timeoutMs: 12 * 60_000,
        },
        workerLock,
        say,
      );
      runs.push(run);
      harnessErrors.push(...run.errors);
      for (const f of run.fired) fired[f.kind]++;
      // A big fault whose moment never came (the promotion ended first) goes to a later promotion.
      for (const f of run.notFired)
        if (f.kind !== 'worker_sigkill' && fired[f.kind] < opts.quota[f.kind])
          slots.splice(rng.int(0, slots.length), 0, f.kind);
      champion = (await stack.registry.getAlias(MODEL, 'champion').catch(() => null)) ?? champion;
      say(
        `faults so far: ${FAULT_KINDS.map((k) => `${k} ${fired[k]}/${opts.quota[k]}`).join(', ')}; checks failed so far: ${runs.flatMap((r) => r.checks).filter((c) => !c.ok).length}`,
      );
    }
  } catch (err) {
    harnessErrors.push(`harness: ${(err as Error).stack ?? String(err)}`);
    say(`harness error: ${(err as Error).message}`);
  }
  if (interrupted) return new Promise(() => undefined); // the SIGINT handler prints and exits
  const summary = await finish();
  const failed = (summary.checks as { failed: number }).failed;
  const quotaOk = (summary.faults as { quotaMet: boolean }).quotaMet;
  const ok = failed === 0 && quotaOk && harnessErrors.length === 0;
  if (ok && !opts.keep) rmSync(dataDir, { recursive: true, force: true });
  else say(`data folder kept for inspection: ${dataDir}`);
  process.stdout.write(`${JSON.stringify(summary, null, 2)}\n`);
  return ok ? 0 : 1;
}

function summarize(
  runs: PromotionRun[],
  harnessErrors: string[],
  unexpected: TrialStack['unexpected'],
  traffic: Record<string, number> | null,
  cleanup: unknown,
  interrupted: boolean,
  dataDir: string,
): Summary {
  const records: PromotionRecord[] = runs.map((r) => r.record);
  const fired: FaultRecord[] = runs.flatMap((r) => r.fired);
  const checks = runs.flatMap((r) => r.checks);
  const count = <T extends string>(items: T[]) =>
    items.reduce<Record<string, number>>((acc, k) => ((acc[k] = (acc[k] ?? 0) + 1), acc), {});
  const byKind = Object.fromEntries(FAULT_KINDS.map((k) => [k, fired.filter((f) => f.kind === k).length]));
  const unavailable = (kind: FaultKind) => {
    const ms = fired.filter((f) => f.kind === kind && f.unavailableMs !== null).map((f) => f.unavailableMs!);
    return ms.length
      ? {
          count: ms.length,
          meanSec: round(ms.reduce((a, b) => a + b, 0) / ms.length / 1000),
          maxSec: round(Math.max(...ms) / 1000),
        }
      : null;
  };
  const waitedMs = runs.map((r) => r.waitedForFaultsMs);
  const cpu = cpus();
  return {
    seed: opts.seed,
    command: `npm run trials -- ${process.argv.slice(2).join(' ')}`.trim(),
    startedAt: new Date(t0).toISOString(),
    durationSec: Math.round((Date.now() - t0) / 1000),
    interrupted,
    machine: {
      host: hostname(),
      cpus: cpu.length,
      cpuModel: cpu[0]?.model ?? null,
      memoryGiB: round(totalmem() / 2 ** 30),
      node: process.version,
    },
    settings: {
      plan: 'canary 20% (12s) -> 50% (12s) -> 100% (4s) -> watch 10s with 10% holdback; shadow 6s; lease 15s renewed every 3s; guardrails every 2s; maxConsecutiveErrors 20; maxExtensions 2; onInconclusive/onNoData rollback',
      trafficPerSec: opts.rate,
      labelDelaySec: 2,
      mlflowDownSec: opts.mlflowDownMs / 1000,
      gatewayDownSec: opts.gatewayDownMs / 1000,
    },
    promotions: {
      total: records.length,
      byOutcome: count(records.map((r) => r.outcome)),
      badCandidates: records
        .filter((r) => r.bad)
        .map((r) => ({ n: r.n, candidate: r.candidate, outcome: r.outcome })),
      meanDurationSec: records.length
        ? round(records.reduce((a, r) => a + r.durationSec, 0) / records.length)
        : null,
      maxDurationSec: records.length ? Math.max(...records.map((r) => r.durationSec)) : null,
      list: records.map((r) => ({
        n: r.n,
        candidate: r.candidate,
        champion: r.champion,
        outcome: r.outcome,
        reason: r.reason,
        durationSec: r.durationSec,
        faults: r.faults,
      })),
    },
    faults: {
      byKind,
      quota: opts.quota,
      quotaMet: FAULT_KINDS.every((k) => (byKind[k] ?? 0) >= opts.quota[k]),
      byPhase: count(fired.map((f) => `${f.kind}@${f.phase ?? '?'}`)),
      unavailable: Object.fromEntries(
        FAULT_KINDS.filter((k) => k !== 'terminate').map((k) => [k, unavailable(k)]),
      ),
    },
    checks: {
      run: checks.length,
      passed: checks.filter((c) => c.ok).length,
      failed: checks.filter((c) => !c.ok).length,
      byCheck: count(checks.map((c) => c.check)),
      failures: checks
        .filter((c) => !c.ok)
        .map((c) => ({ after: c.after, check: c.check, detail: c.detail })),
    },
    recoveries: records.flatMap((r) => (r.recovery ? [r.recovery] : [])),
    waits: {
      forFaultsToEndBeforeChecks: {
        promotions: waitedMs.filter((ms) => ms > 1000).length,
        totalSec: round(waitedMs.reduce((a, b) => a + b, 0) / 1000),
        maxSec: round(Math.max(0, ...waitedMs) / 1000),
      },
      unexpectedExits: unexpected,
    },
    traffic,
    harnessErrors,
    cleanup,
    dataDir,
  };
}

const round = (x: number) => Math.round(x * 10) / 10;

main().then(
  (code) => process.stdout.write('', () => process.exit(code)),
  (err: unknown) => {
    process.stderr.write(`trials: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
