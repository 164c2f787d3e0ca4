/**
 * The promotion's stages, in order: staging, validating (gates), shadow, canary (approval, shift,
 * bake per step), watching, finalizing. Each reads and changes the run's state through the context
 * and stops through `stopNow`; the workflow file only sequences them.
 */
import { upsertMemo } from '@temporalio/workflow';
import { assessGate } from '../analysis/gate';
import { assessShadow } from '../analysis/shadow';
import { formatDuration, parseDuration } from '../plan/duration';
import { nowMs } from './clock';
import { refsOf, type Ctx } from './context';
import { ensureLease, leaseGone, releaseLeaseForGood } from './lease';
import { announce, finishing, recordOutcome, untilDone } from './rollback';
import type { PromotionRun } from './run';
import { StopSignal, stopNow } from './stop';
import { checkGuardrails, checkpoint, conclude, hold, liveChecks } from './waiting';

export function enter(ctx: Ctx, stage: PromotionRun['s']['stage']): void {
  ctx.run.s.stage = stage;
  ctx.run.s.wait = null;
  ctx.sync();
}

export async function staging(ctx: Ctx): Promise<void> {
  const { run, acts, input } = ctx;
  const s = run.s;
  const registry = s.plan.registry;
  const refs = refsOf(input);
  if (s.champion === null) {
    const { champion } = await acts.resolveVersions({
      model: s.model,
      candidate: s.candidate,
      championAlias: registry.championAlias,
      refs,
    });
    s.champion = champion;
    upsertMemo({ champion });
  }
  await checkpoint(ctx);
  if (!s.touched.challengerAlias) {
    s.touched.challengerAlias = {
      previous: await acts.getAlias({ model: s.model, alias: registry.challengerAlias, refs }),
    };
  }
  // Mark before acting: an interrupted deploy is still undone (compensations are idempotent).
  s.touched.deployed = true;
  const deployed = await acts.deployVersion({ model: s.model, version: s.candidate, refs });
  if (!deployed.smokeOk)
    stopNow(run, {
      outcome: 'failed',
      by: 'promote',
      reason: `smoke test of ${s.candidate} failed: ${deployed.smokeDetail}`,
    });
  await acts.setAlias({ model: s.model, alias: registry.challengerAlias, version: s.candidate, refs });
  await acts.tagVersion({
    model: s.model,
    version: s.candidate,
    refs,
    tags: { 'promotion.id': s.id, 'promotion.phase': 'staging', 'promotion.plan_hash': s.planHash },
  });
  if (s.plan.policy) {
    if (!s.touched.policy)
      s.touched.policy = { previous: await acts.getPolicy({ model: s.model, version: s.candidate, refs }) };
    await acts.setPolicy({
      model: s.model,
      version: s.candidate,
      thresholds: s.plan.policy.thresholds,
      refs,
    });
  }
  run.decide('staged', 'promote', `${s.candidate} deployed at ${deployed.endpoint}`, nowMs(), [
    deployed.smokeDetail,
  ]);
  enter(ctx, 'validating');
}

export async function validating(ctx: Ctx): Promise<void> {
  const { run, acts } = ctx;
  const s = run.s;
  for (let i = s.gatesPassed; i < s.plan.gates.length; i++) {
    await checkpoint(ctx);
    const gate = s.plan.gates[i]!;
    const measured = await acts.measureGate({ ...ctx.target(), gate });
    const a = assessGate(gate, measured.candidate, measured.champion);
    run.decide('gate', 'promote', `${a.subject}: ${a.verdict}`, nowMs(), [a.evidence]);
    if (a.verdict !== 'Pass')
      stopNow(run, { outcome: 'failed', by: 'promote', reason: `${a.subject} ${a.verdict}: ${a.evidence}` });
    s.gatesPassed = i + 1;
  }
  enter(ctx, 'shadow');
}

export async function shadow(ctx: Ctx): Promise<void> {
  const { run, acts } = ctx;
  const s = run.s;
  const plan = s.plan.shadow;
  if (plan) {
    await checkpoint(ctx);
    if (s.shadowStartedAtMs === null) {
      await ensureLease(ctx);
      await checkpoint(ctx);
      s.touched.shadow = true;
      await acts.setShadow({ ...ctx.target(), sampleRate: plan.sampleRate, lease: s.lease?.holder });
      s.shadowStartedAtMs = nowMs();
      run.decide(
        'shadow',
        'promote',
        `mirroring ${plan.sampleRate * 100}% of traffic to ${s.candidate} for ${plan.duration}`,
        nowMs(),
      );
    }
    await hold(ctx, 'shadow', { durationMs: parseDuration(plan.duration), countPaused: false });
    const comparison = await acts.measureShadow({
      ...ctx.target(),
      fromMs: s.shadowStartedAtMs,
      toMs: nowMs(),
      policy: s.plan.policy?.thresholds ?? null,
      alpha: plan.alpha,
    });
    const a = assessShadow(plan, comparison);
    run.decide('shadow', 'promote', `${a.subject}: ${a.verdict}`, nowMs(), [a.evidence]);
    // Shadow off: all traffic is on the champion again, which ends the lease until the canary.
    await acts.setShadow({ ...ctx.target(), sampleRate: null, lease: s.lease?.holder });
    s.touched.shadow = false;
    leaseGone(ctx);
    if (a.verdict !== 'Pass')
      stopNow(run, { outcome: 'failed', by: 'promote', reason: `shadow ${a.verdict}: ${a.evidence}` });
  }
  enter(ctx, 'canary');
}

export async function canary(ctx: Ctx): Promise<void> {
  const { run, acts } = ctx;
  const s = run.s;
  const steps = s.plan.canary.steps;
  for (let i = Math.max(0, s.stepIndex); i < steps.length; i++) {
    const step = steps[i]!;
    s.stepIndex = i;
    await checkpoint(ctx);
    if (step.approval && !s.approvedSteps.includes(i)) await awaitApproval(ctx, i);
    // A pause while the approval was pending holds: the last vote does not shift traffic.
    await checkpoint(ctx);
    if (s.appliedStep < i) {
      await ensureLease(ctx);
      await checkpoint(ctx);
      // The last step stops short by the watch's holdback; the holdback is released when the watch ends.
      const last = i === steps.length - 1;
      const percent = last && s.plan.watch ? step.traffic - s.plan.watch.holdbackPercent : step.traffic;
      s.touched.traffic = true;
      const changingAtMs = nowMs();
      const route = await acts.setTraffic({
        ...ctx.target(),
        percent,
        stickyKey: s.plan.canary.assignment.stickyKey,
        lease: s.lease?.holder,
        // The router records the plan's slice keys with every request from the first shift on
        // (none: a previous promotion's keys are no longer recorded).
        sliceKeys: [...new Set(s.plan.slices.map((x) => x.key))],
      });
      s.trafficPercent = percent;
      s.appliedStep = i;
      s.liveSinceMs = nowMs();
      run.newSplit(percent, changingAtMs, nowMs());
      s.extensions = 0;
      s.lastChecks = [];
      run.decide(
        'traffic',
        'promote',
        `step ${i + 1} of ${steps.length}: ${s.candidate} at ${percent}%`,
        nowMs(),
        [JSON.stringify(route.weights)],
      );
      ctx.sync();
    }
    await bake(ctx, i);
  }
  enter(ctx, 'watching');
}

async function bake(ctx: Ctx, i: number): Promise<void> {
  const s = ctx.run.s;
  const bakeMs = parseDuration(s.plan.canary.steps[i]!.bake);
  const id = `bake:${i}`;
  const wait = () =>
    hold(ctx, id, { durationMs: bakeMs * (1 + s.extensions), countPaused: false, ...liveChecks(ctx) });
  await wait();
  // A step without a bake moves on at once; one with a bake must end on all-Pass guardrails.
  if (bakeMs > 0 && s.plan.guardrails.length > 0)
    await conclude(ctx, `step ${i + 1} bake`, async () => void (await wait()));
}

async function awaitApproval(ctx: Ctx, i: number): Promise<void> {
  const { run } = ctx;
  const s = run.s;
  const approval = s.plan.canary.steps[i]!.approval!;
  if (s.pendingApproval?.step !== i) {
    run.openApproval(i, approval, parseDuration(approval.timeout), nowMs());
    ctx.sync();
  }
  for (;;) {
    const pending = s.pendingApproval!;
    const result = await hold(ctx, `approval:${i}:${pending.expiresAt ?? 'paused'}`, {
      deadlineMs: pending.expiresAt ? Date.parse(pending.expiresAt) : undefined,
      countPaused: true,
      until: () => run.approvalGranted || (pending.expiresAt === null && !s.paused),
      ...liveChecks(ctx),
    });
    if (run.approvalGranted) {
      s.approvedSteps.push(i);
      s.pendingApproval = null;
      ctx.sync();
      return;
    }
    if (result === 'until') {
      pending.expiresAt = new Date(nowMs() + pending.timeoutMs).toISOString();
      run.decide(
        'approval_requested',
        'promote',
        `approval for step ${i + 1} re-opened after resume`,
        nowMs(),
      );
      continue;
    }
    const reason = `approval for step ${i + 1} timed out after ${formatDuration(pending.timeoutMs)} with ${pending.received.length} of ${pending.required}`;
    run.decide('approval_timeout', 'promote', reason, nowMs());
    if (pending.onTimeout === 'abort') stopNow(run, { outcome: 'aborted', by: 'promote', reason });
    pending.expiresAt = null;
    run.systemPause(`${reason}; approvals still count, resume re-opens it`, nowMs());
    ctx.sync();
  }
}

export async function watching(ctx: Ctx): Promise<void> {
  const { run } = ctx;
  const s = run.s;
  const watch = s.plan.watch;
  if (watch) {
    if (s.watchStartedAtMs === null) {
      s.watchStartedAtMs = nowMs();
      s.extensions = 0;
      run.decide(
        'watch',
        'promote',
        `watching for ${watch.window} with ${watch.holdbackPercent}% held back on ${s.champion}`,
        nowMs(),
      );
    }
    const wait = () =>
      hold(ctx, 'watch', {
        durationMs: parseDuration(watch.window) * (1 + s.extensions),
        countPaused: false,
        check: () => checkGuardrails(ctx),
        checkEveryMs: parseDuration(watch.interval),
      });
    await wait();
    if (s.plan.guardrails.length > 0 || watch.labels)
      await conclude(ctx, 'watch', async () => void (await wait()));
  }
  enter(ctx, 'finalizing');
}

export async function finalizing(ctx: Ctx): Promise<void> {
  const { run, acts, input } = ctx;
  const s = run.s;
  const refs = refsOf(input);
  const registry = s.plan.registry;
  const champion = s.champion!;
  if (!s.committed) {
    await checkpoint(ctx);
    if (!s.touched.championAlias) s.touched.championAlias = { previous: champion };
    await acts.setAlias({ model: s.model, alias: registry.championAlias, version: s.candidate, refs });
    if (s.trafficPercent !== 100) {
      await acts.setTraffic({
        ...ctx.target(),
        percent: 100,
        stickyKey: s.plan.canary.assignment.stickyKey,
        lease: s.lease?.holder,
        sliceKeys: [],
      });
      s.trafficPercent = 100;
    }
    run.decide(
      'promoted',
      'promote',
      `${registry.championAlias} -> ${s.candidate}; 100% of traffic`,
      nowMs(),
    );
    ctx.sync();
    // The last moment an abort rolls back. Then the lease is released: the point of no return.
    // A lease that ended meanwhile means the gateway went back to the champion: roll back too.
    await checkpoint(ctx);
    if (!(await releaseLeaseForGood(ctx))) throw new StopSignal();
    run.commit(nowMs());
    ctx.sync();
  }
}

/**
 * After the point of no return the promotion only finishes: each step is retried until it succeeds
 * (no rollback can follow a released lease), even if the workflow is cancelled meanwhile.
 */
export async function finish(ctx: Ctx): Promise<void> {
  const { run, input } = ctx;
  const s = run.s;
  const refs = refsOf(input);
  const registry = s.plan.registry;
  const champion = s.champion!;
  const acts = finishing;
  if (s.touched.challengerAlias) {
    const previous = s.touched.challengerAlias.previous;
    await untilDone(ctx, `registry: ${registry.challengerAlias} -> ${previous ?? 'none'}`, () =>
      acts.setAlias({
        model: s.model,
        alias: registry.challengerAlias,
        version: previous === s.candidate ? null : previous,
        refs,
      }),
    );
    s.touched.challengerAlias = null;
  }
  s.touched.championDecommissioned = true;
  await untilDone(ctx, `serving: ${champion} decommissioned`, () =>
    acts.decommissionVersion({ model: s.model, version: champion, refs }),
  );
  await recordOutcome(ctx, 'succeeded');
  s.outcome = 'succeeded';
  s.stage = 'done';
  s.wait = null;
  await announce(ctx);
}
