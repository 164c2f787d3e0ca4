/**
 * The rollback saga, in a fixed order: traffic back to the champion first (which also ends the
 * lease), then the registry aliases, the policy, the serving processes, and last the outcome on the
 * version and the notification. Compensations never give up: each is retried with capped backoff
 * until it succeeds, while status shows phase rolling_back and the failing step; the outcome is set
 * only when every compensation has succeeded. The saga is data (`touched`), so it survives
 * continue-as-new and resumes where it was.
 */
import { ActivityCancellationType, proxyActivities, sleep } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { nowMs } from './clock';
import { refsOf, type Ctx } from './context';
import { maybeContinueAsNew } from './handover';
import { ACTIVITY_HEARTBEAT_TIMEOUT } from './options';
import { releaseQuietly } from './lease';
import { clip } from './run';

/** Compensations and the steps after the point of no return: never given up (see `untilDone`). */
export const finishing = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: ACTIVITY_HEARTBEAT_TIMEOUT,
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  // A few quick tries per attempt; `untilDone` retries attempts for as long as it takes.
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 4 },
});

/** Backoff between attempts of a failing compensation: 5s doubling, capped at 2 minutes. */
export function compensationBackoffMs(attempt: number): number {
  return Math.min(5_000 * 2 ** Math.min(attempt - 1, 10), 120_000);
}

function errorText(err: unknown): string {
  const cause = (err as { cause?: { message?: string } }).cause;
  return clip(cause?.message ?? (err instanceof Error ? err.message : String(err)), 1000);
}

/** Runs `fn` until it succeeds, recording the failing step in state (status shows it). */
export async function untilDone(ctx: Ctx, step: string, fn: () => Promise<unknown>): Promise<void> {
  const { run } = ctx;
  const s = run.s;
  for (;;) {
    try {
      await fn();
      if (s.compensation?.step === step) {
        run.decide(
          'rollback',
          'promote',
          `${step}: succeeded after ${s.compensation.attempts + 1} attempts`,
          nowMs(),
        );
        s.compensation = null;
      }
      return;
    } catch (err) {
      const error = errorText(err);
      if (s.compensation?.step !== step)
        s.compensation = { step, attempts: 0, since: new Date(nowMs()).toISOString(), error };
      s.compensation.attempts++;
      s.compensation.error = error;
      if (s.compensation.attempts === 1)
        run.decide('rollback_error', 'promote', `${step} failed; retrying until it succeeds`, nowMs(), [
          error,
        ]);
      ctx.sync();
      await sleep(compensationBackoffMs(s.compensation.attempts));
      await maybeContinueAsNew(ctx);
    }
  }
}

export async function rollback(ctx: Ctx): Promise<void> {
  const { run, input } = ctx;
  const s = run.s;
  const t = s.touched;
  const refs = refsOf(input);
  const registry = s.plan.registry;
  s.rollingBack = true;
  s.pendingApproval = null;
  s.paused = null;
  ctx.sync();
  const champion = s.champion;

  const steps: { name: string; needed: boolean; undo: () => Promise<unknown>; done: () => void }[] = [
    {
      name: `traffic: 100% to ${champion}, shadow off`,
      needed: champion !== null && (t.traffic || t.shadow || s.lease !== null),
      undo: async () => {
        if (t.championDecommissioned)
          await finishing.deployVersion({ model: s.model, version: champion!, refs });
        await finishing.routeAllTo({
          model: s.model,
          version: champion!,
          stickyKey: s.plan.canary.assignment.stickyKey,
          refs,
          ...(s.lease ? { lease: s.lease.holder } : {}),
        });
        await releaseQuietly(ctx);
      },
      done: () => {
        t.traffic = t.shadow = t.championDecommissioned = false;
        s.trafficPercent = 0;
      },
    },
    {
      name: `registry: ${registry.championAlias} -> ${t.championAlias?.previous ?? 'none'}`,
      needed: t.championAlias !== null,
      undo: () =>
        finishing.setAlias({
          model: s.model,
          alias: registry.championAlias,
          version: t.championAlias!.previous,
          refs,
        }),
      done: () => (t.championAlias = null),
    },
    {
      name: `registry: ${registry.challengerAlias} -> ${t.challengerAlias?.previous ?? 'none'}`,
      needed: t.challengerAlias !== null,
      undo: () =>
        finishing.setAlias({
          model: s.model,
          alias: registry.challengerAlias,
          version: t.challengerAlias!.previous,
          refs,
        }),
      done: () => (t.challengerAlias = null),
    },
    {
      name: `policy: ${s.candidate} thresholds restored`,
      needed: t.policy !== null,
      undo: () =>
        finishing.setPolicy({ model: s.model, version: s.candidate, thresholds: t.policy!.previous, refs }),
      done: () => (t.policy = null),
    },
    {
      name: `serving: ${s.candidate} decommissioned`,
      needed: t.deployed,
      undo: () => finishing.decommissionVersion({ model: s.model, version: s.candidate, refs }),
      done: () => (t.deployed = false),
    },
  ];
  for (const step of steps) {
    if (!step.needed) continue;
    await untilDone(ctx, step.name, step.undo);
    step.done();
    run.decide('rollback', 'promote', step.name, nowMs());
    ctx.sync();
  }
  await recordOutcome(ctx, s.stop!.outcome);
  s.outcome = s.stop!.outcome;
  s.rollingBack = false;
  s.stage = 'done';
  s.wait = null;
  await announce(ctx);
}

/**
 * Records the outcome on the candidate version (tags), retried until it succeeds: a version left
 * tagged `promotion.phase=staging` would say a promotion is in progress when none is.
 */
export async function recordOutcome(ctx: Ctx, outcome: string): Promise<void> {
  const s = ctx.run.s;
  if (s.champion === null) return; // the candidate was never resolved: nothing was tagged
  await untilDone(ctx, 'registry: outcome recorded on the version', () =>
    finishing.tagVersion({
      model: s.model,
      version: s.candidate,
      refs: refsOf(ctx.input),
      tags: {
        'promotion.id': s.id,
        'promotion.phase': 'completed',
        'promotion.outcome': outcome,
        'promotion.plan_hash': s.planHash,
      },
    }),
  );
}

/** Notifies once per promotion (idempotent key); a failing notifier is recorded, not fatal. */
export async function announce(ctx: Ctx): Promise<void> {
  const { run, input } = ctx;
  const s = run.s;
  const outcome = s.outcome!;
  const reason = s.stop?.reason ?? `${s.candidate} promoted`;
  try {
    await finishing.notify({
      refs: refsOf(input),
      event: {
        key: `${s.id}:${s.startedAt}:completed`,
        promotionId: s.id,
        model: s.model,
        candidate: s.candidate,
        kind: outcome,
        message: reason,
      },
    });
  } catch (err) {
    run.decide('rollback_error', 'promote', 'notification failed', nowMs(), [errorText(err)]);
  }
  run.decide('completed', 'promote', `${outcome}: ${reason}`, nowMs());
  ctx.sync();
}
