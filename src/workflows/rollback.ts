/**
 * The rollback saga, in a fixed order: traffic back to the champion first, then the registry
 * aliases, the policy, the serving processes, and last the status tags and notification. Every
 * compensation is idempotent, recorded in the decision log, and runs even if an earlier one failed.
 */
import { proxyActivities, ActivityCancellationType } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { nowMs } from './clock';
import { refsOf, type Ctx } from './context';

const compensate = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  // Compensations try harder than forward steps: leaving traffic on a bad candidate is worse.
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '1 minute', maximumAttempts: 20 },
});

export async function rollback(ctx: Ctx): Promise<void> {
  const { run, input } = ctx;
  const s = run.s;
  const t = s.touched;
  const refs = refsOf(input);
  const registry = s.plan.registry;
  s.rollingBack = true;
  ctx.sync();
  const champion = s.champion;

  const steps: { name: string; needed: boolean; undo: () => Promise<unknown>; done: () => void }[] = [
    {
      name: `traffic: 100% to ${champion}, shadow off`,
      needed: champion !== null && (t.traffic || t.shadow),
      undo: async () => {
        if (t.championDecommissioned)
          await compensate.deployVersion({ model: s.model, version: champion!, refs });
        await compensate.routeAllTo({
          model: s.model,
          version: champion!,
          stickyKey: s.plan.canary.assignment.stickyKey,
          refs,
        });
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
        compensate.setAlias({
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
        compensate.setAlias({
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
        compensate.setPolicy({ model: s.model, version: s.candidate, thresholds: t.policy!.previous, refs }),
      done: () => (t.policy = null),
    },
    {
      name: `serving: ${s.candidate} decommissioned`,
      needed: t.deployed,
      undo: () => compensate.decommissionVersion({ model: s.model, version: s.candidate, refs }),
      done: () => (t.deployed = false),
    },
  ];
  for (const step of steps) {
    if (!step.needed) continue;
    try {
      await step.undo();
      step.done();
      run.decide('rollback', 'promote', step.name, nowMs());
    } catch (err) {
      run.decide('rollback_error', 'promote', `${step.name} failed`, nowMs(), [
        err instanceof Error ? ((err.cause as Error | undefined)?.message ?? err.message) : String(err),
      ]);
    }
    ctx.sync();
  }
  s.outcome = s.stop!.outcome;
  s.rollingBack = false;
  s.stage = 'done';
  s.wait = null;
  s.pendingApproval = null;
  s.paused = null;
  await announce(ctx);
}

/** Records the outcome on the candidate version and notifies; failures are logged, not fatal. */
export async function announce(ctx: Ctx): Promise<void> {
  const { run, input } = ctx;
  const s = run.s;
  const refs = refsOf(input);
  const outcome = s.outcome!;
  const reason = s.stop?.reason ?? `${s.candidate} promoted`;
  if (s.champion !== null) {
    try {
      await compensate.tagVersion({
        model: s.model,
        version: s.candidate,
        refs,
        tags: {
          'promotion.id': s.id,
          'promotion.phase': 'completed',
          'promotion.outcome': outcome,
          'promotion.plan_hash': s.planHash,
        },
      });
    } catch (err) {
      run.decide('rollback_error', 'promote', 'recording the outcome on the version failed', nowMs(), [
        String(err),
      ]);
    }
  }
  try {
    await compensate.notify({
      refs,
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
    run.decide('rollback_error', 'promote', 'notification failed', nowMs(), [String(err)]);
  }
  run.decide('completed', 'promote', `${outcome}: ${reason}`, nowMs());
  ctx.sync();
}
