/**
 * The promotion workflow: staging -> gates -> shadow -> canary steps (approval, shift, bake)
 * -> watch -> promoted; any stop request runs the rollback saga. The state and the message rules
 * live in PromotionRun; this file is the wiring and the main loop.
 */
import {
  ApplicationFailure,
  CancellationScope,
  ContinueAsNew,
  allHandlersFinished,
  condition,
  continueAsNew,
  isCancellation,
  proxyActivities,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
  ActivityCancellationType,
  log,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { assessGate } from '../analysis/gate';
import { assessGuardrail } from '../analysis/guardrail';
import { assessLabels } from '../analysis/labels';
import { assessShadow } from '../analysis/shadow';
import { combineVerdicts, type Assessment, type Verdict } from '../analysis/types';
import { formatDuration, parseDuration } from '../plan/duration';
import { nowMs } from './clock';
import {
  abortSignal,
  approveSignal,
  approveUpdate,
  pauseSignal,
  rejectSignal,
  rejectUpdate,
  resumeSignal,
  statusQuery,
} from './messages';
import { refsOf, type Ctx } from './context';
import { rollback, announce } from './rollback';
import { initialState, PromotionRun } from './run';
import { OUTCOME, PHASE, TRAFFIC } from './search';
import type { PromotionInput, PromotionResult, StopRequest } from './types';

const forward = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  // Wait for a cancelled activity to finish, so a compensation never races the step it undoes.
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s', maximumAttempts: 8 },
});

/** Measurements are read-only and quick: a short timeout so a lost worker delays a check by seconds. */
const measuring = proxyActivities<Pick<Activities, 'measureGuardrails' | 'measureLabels'>>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 },
});

/** Thrown inside the workflow to unwind to the rollback once a stop has been requested. */
class StopSignal extends Error {}

export async function promotionWorkflow(input: PromotionInput): Promise<PromotionResult> {
  const info = workflowInfo();
  const run = new PromotionRun(input.carried ?? initialState(input, info.workflowId, nowMs()));
  if (!input.carried)
    run.decide('started', input.startedBy, `promote ${input.model} ${input.candidate}`, nowMs(), [
      input.planHash,
    ]);
  const ctx = makeContext(run, input);
  installHandlers(run, ctx.sync);
  ctx.sync();

  try {
    await advance(ctx);
  } catch (err) {
    if (err instanceof ContinueAsNew) throw err;
    recordStop(run, err);
  }
  if (run.stopping) {
    // Compensations must run even when the workflow itself is being cancelled.
    await CancellationScope.nonCancellable(() => rollback(ctx));
  }
  ctx.sync();
  return { outcome: run.s.outcome!, reason: run.s.stop?.reason ?? null, status: run.status() };
}

function makeContext(run: PromotionRun, input: PromotionInput): Ctx {
  const refs = refsOf(input);
  let synced = '';
  return {
    run,
    input,
    acts: forward,
    target: () => ({
      promotionId: run.s.id,
      model: run.s.model,
      candidate: run.s.candidate,
      champion: run.s.champion ?? '',
      refs,
    }),
    sync: () => {
      const phase = run.phase;
      const key = `${phase}/${run.s.trafficPercent}/${run.s.outcome}`;
      if (key === synced) return;
      synced = key;
      upsertSearchAttributes([
        { key: PHASE, value: phase },
        { key: TRAFFIC, value: run.s.trafficPercent },
        ...(run.s.outcome ? [{ key: OUTCOME, value: run.s.outcome }] : []),
      ]);
    },
  };
}

function installHandlers(run: PromotionRun, sync: () => void): void {
  const after = <T>(result: T): T => {
    sync();
    return result;
  };
  setHandler(approveSignal, (p) => void after(run.vote('approve', p, nowMs())));
  setHandler(rejectSignal, (p) => void after(run.vote('reject', p, nowMs())));
  setHandler(abortSignal, (p) => void after(run.abort(p, nowMs())));
  setHandler(pauseSignal, (p) => void after(run.pause(p, nowMs())));
  setHandler(resumeSignal, (p) => void after(run.resume(p, nowMs())));
  const voteUpdate = (kind: 'approve' | 'reject') => (p: unknown) => {
    const result = after(run.vote(kind, p, nowMs()));
    if (!result.accepted)
      throw ApplicationFailure.create({ type: 'NotAllowed', message: result.message, nonRetryable: true });
    return result;
  };
  setHandler(approveUpdate, voteUpdate('approve'));
  setHandler(rejectUpdate, voteUpdate('reject'));
  setHandler(statusQuery, () => run.status());
}

/** Turns whatever ended the main loop into a stop request (the first request wins). */
function recordStop(run: PromotionRun, err: unknown): void {
  if (err instanceof StopSignal) return;
  let stop: StopRequest;
  if (isCancellation(err))
    stop = { outcome: 'aborted', by: 'temporal', reason: 'the workflow was cancelled' };
  else {
    const cause = (err as { cause?: { message?: string } }).cause;
    stop = {
      outcome: 'failed',
      by: 'promote',
      reason: cause?.message ?? (err instanceof Error ? err.message : String(err)),
    };
  }
  run.requestStop(stop, nowMs());
}

function stopNow(run: PromotionRun, stop: StopRequest, evidence: string[] = []): never {
  run.requestStop(stop, nowMs(), evidence);
  throw new StopSignal();
}

async function advance(ctx: Ctx): Promise<void> {
  const { run } = ctx;
  const s = run.s;
  if (s.stage === 'staging') await staging(ctx);
  if (s.stage === 'validating') await validating(ctx);
  if (s.stage === 'shadow') await shadow(ctx);
  if (s.stage === 'canary') await canary(ctx);
  if (s.stage === 'watching') await watching(ctx);
  if (s.stage === 'finalizing') await finalizing(ctx);
}

function enter(ctx: Ctx, stage: PromotionRun['s']['stage']): void {
  ctx.run.s.stage = stage;
  ctx.run.s.wait = null;
  ctx.sync();
}

// ---------------------------------------------------------------------------------------------
// Waiting

interface HoldOptions {
  /** Ends the wait after this much counted time, ms. */
  durationMs?: number;
  /** Ends the wait at this time (epoch ms). */
  deadlineMs?: number;
  /** Paused time counts toward the duration (approval expiry is wall-clock; bakes are not). */
  countPaused: boolean;
  /** Ends the wait early when true. */
  until?: () => boolean;
  /** Run guardrail checks every `checkEveryMs` while waiting. */
  check?: () => Promise<unknown>;
  checkEveryMs?: number;
}

/**
 * Waits durably: wakes for stop requests, pause changes and `until`, runs the periodic checks, and
 * continues-as-new when history grows. The wait's clock lives in state, so it resumes where it was.
 */
async function hold(ctx: Ctx, id: string, opts: HoldOptions): Promise<'elapsed' | 'until'> {
  const { run } = ctx;
  if (run.s.wait?.id !== id) run.s.wait = { id, elapsedMs: 0, sinceCheckMs: 0 };
  const w = run.s.wait;
  const checkEvery = opts.check ? Math.max(1000, opts.checkEveryMs ?? 30_000) : Infinity;
  for (;;) {
    if (run.stopping) throw new StopSignal();
    if (opts.until?.()) return 'until';
    const paused = run.s.paused !== null;
    const counting = !paused || opts.countPaused;
    const left = Math.min(
      opts.durationMs === undefined ? Infinity : opts.durationMs - w.elapsedMs,
      opts.deadlineMs === undefined ? Infinity : opts.deadlineMs - nowMs(),
    );
    if (counting && left <= 0) return 'elapsed';
    const timeout = Math.min(counting ? left : Infinity, checkEvery - w.sinceCheckMs);
    const started = nowMs();
    const wake = () => run.stopping || (run.s.paused !== null) !== paused || (opts.until?.() ?? false);
    if (timeout === Infinity) await condition(wake);
    else if (timeout > 0) await condition(wake, Math.max(1, Math.ceil(timeout)));
    const dt = nowMs() - started;
    if (counting) w.elapsedMs += dt;
    w.sinceCheckMs += dt;
    if (opts.check && w.sinceCheckMs >= checkEvery && !run.stopping) {
      w.sinceCheckMs = 0;
      await opts.check();
    }
    ctx.sync();
    await maybeContinueAsNew(ctx);
  }
}

/** Between steps: stop if asked, and wait out a pause (with guardrail checks when traffic is live). */
async function checkpoint(ctx: Ctx): Promise<void> {
  if (ctx.run.stopping) throw new StopSignal();
  if (ctx.run.s.paused)
    await hold(ctx, `paused:${ctx.run.s.paused.at}`, {
      countPaused: false,
      until: () => !ctx.run.s.paused,
      ...liveChecks(ctx),
    });
}

async function maybeContinueAsNew(ctx: Ctx): Promise<void> {
  const info = workflowInfo();
  const limit = ctx.input.options?.continueAsNewAfterEvents;
  if (!info.continueAsNewSuggested && !(limit !== undefined && info.historyLength >= limit)) return;
  // Let running message handlers finish so no accepted vote is lost in the hand-over.
  await condition(allHandlersFinished);
  const run = ctx.run;
  run.s.continuedAsNew++;
  run.decide('continued_as_new', 'promote', `history reached ${info.historyLength} events`, nowMs());
  log.info('continuing as new', {
    model: run.s.model,
    version: run.s.candidate,
    historyLength: info.historyLength,
  });
  await continueAsNew<typeof promotionWorkflow>({ ...ctx.input, carried: run.s });
}

// ---------------------------------------------------------------------------------------------
// Guardrails

/** Periodic checks while live traffic reaches the candidate; none before the first shift. */
function liveChecks(ctx: Ctx): Pick<HoldOptions, 'check' | 'checkEveryMs'> {
  const s = ctx.run.s;
  if (s.trafficPercent === 0 || s.liveSinceMs === null) return {};
  return { check: () => checkGuardrails(ctx), checkEveryMs: parseDuration(s.plan.analysis.interval) };
}

/** One round of guardrail (and, in the watch, label) assessments; stops on Fail. */
async function checkGuardrails(ctx: Ctx): Promise<Verdict> {
  const { run } = ctx;
  const s = run.s;
  const fromMs =
    s.stage === 'watching' && s.watchStartedAtMs !== null ? s.watchStartedAtMs : (s.liveSinceMs ?? nowMs());
  const toMs = nowMs();
  const assessments: Assessment[] = [];
  if (s.plan.guardrails.length > 0) {
    const measured = await measuring.measureGuardrails({
      ...ctx.target(),
      guardrails: s.plan.guardrails,
      fromMs,
      toMs,
    });
    s.plan.guardrails.forEach((rule, i) =>
      assessments.push(assessGuardrail(rule, measured[i]!.candidate, measured[i]!.champion)),
    );
  }
  const labels = s.plan.watch?.labels;
  if (s.stage === 'watching' && labels) {
    const m = await measuring.measureLabels({ ...ctx.target(), metric: labels.metric, fromMs, toMs });
    assessments.push(assessLabels(labels, m.candidate, m.champion));
  }
  run.recordChecks(assessments, nowMs());
  const failed = assessments.filter((a) => a.verdict === 'Fail');
  if (failed.length > 0) {
    stopNow(
      run,
      {
        outcome: 'rolled_back',
        by: 'promote',
        reason: `${failed.map((a) => a.subject).join(', ')} failed at ${s.trafficPercent}% traffic`,
      },
      failed.map((a) => a.evidence),
    );
  }
  const max = s.plan.analysis.maxConsecutiveErrors;
  const erring = assessments.filter((a) => (s.consecutiveErrors[a.subject] ?? 0) >= max);
  if (erring.length > 0) {
    stopNow(
      run,
      {
        outcome: 'rolled_back',
        by: 'promote',
        reason: `${erring.map((a) => a.subject).join(', ')} could not be measured ${max} times in a row`,
      },
      erring.map((a) => a.evidence),
    );
  }
  return combineVerdicts(assessments.map((a) => a.verdict));
}

/**
 * The end of a bake (or the watch): a fresh round must be all Pass. Otherwise the wait is extended
 * (up to maxExtensions), then the plan decides: roll back, or pause for a human whose resume
 * overrides the verdict. NoData and Inconclusive never pass silently.
 */
async function conclude(ctx: Ctx, what: string, extend: () => Promise<void>): Promise<void> {
  const { run } = ctx;
  const analysis = run.s.plan.analysis;
  for (;;) {
    const verdict = await checkGuardrails(ctx);
    if (verdict === 'Pass') return;
    if (run.s.extensions < analysis.maxExtensions) {
      run.s.extensions++;
      run.decide(
        'bake_extended',
        'promote',
        `${what}: guardrails ${verdict}; extension ${run.s.extensions} of ${analysis.maxExtensions}`,
        nowMs(),
        run.s.lastChecks.map((a) => a.evidence),
      );
      await extend();
      continue;
    }
    const action = verdict === 'NoData' ? analysis.onNoData : analysis.onInconclusive;
    const reason = `${what}: guardrails ${verdict} after ${analysis.maxExtensions} extension(s)`;
    if (action === 'rollback')
      stopNow(
        run,
        { outcome: 'rolled_back', by: 'promote', reason },
        run.s.lastChecks.map((a) => a.evidence),
      );
    run.pause({ reason: `${reason}; resume to continue anyway, abort to roll back` }, nowMs(), true);
    ctx.sync();
    await checkpoint(ctx);
    return;
  }
}

// ---------------------------------------------------------------------------------------------
// Stages

async function staging(ctx: Ctx): Promise<void> {
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

async function validating(ctx: Ctx): Promise<void> {
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

async function shadow(ctx: Ctx): Promise<void> {
  const { run, acts } = ctx;
  const s = run.s;
  const plan = s.plan.shadow;
  if (plan) {
    await checkpoint(ctx);
    if (s.shadowStartedAtMs === null) {
      s.touched.shadow = true;
      await acts.setShadow({ ...ctx.target(), sampleRate: plan.sampleRate });
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
    });
    const a = assessShadow(plan, comparison);
    run.decide('shadow', 'promote', `${a.subject}: ${a.verdict}`, nowMs(), [a.evidence]);
    await acts.setShadow({ ...ctx.target(), sampleRate: null });
    s.touched.shadow = false;
    if (a.verdict !== 'Pass')
      stopNow(run, { outcome: 'failed', by: 'promote', reason: `shadow ${a.verdict}: ${a.evidence}` });
  }
  enter(ctx, 'canary');
}

async function canary(ctx: Ctx): Promise<void> {
  const { run, acts } = ctx;
  const s = run.s;
  const steps = s.plan.canary.steps;
  for (let i = Math.max(0, s.stepIndex); i < steps.length; i++) {
    const step = steps[i]!;
    s.stepIndex = i;
    await checkpoint(ctx);
    if (step.approval && !s.approvedSteps.includes(i)) await awaitApproval(ctx, i);
    if (s.appliedStep < i) {
      // The last step stops short by the watch's holdback; the holdback is released when the watch ends.
      const last = i === steps.length - 1;
      const percent = last && s.plan.watch ? step.traffic - s.plan.watch.holdbackPercent : step.traffic;
      s.touched.traffic = true;
      const route = await acts.setTraffic({
        ...ctx.target(),
        percent,
        stickyKey: s.plan.canary.assignment.stickyKey,
      });
      s.trafficPercent = percent;
      s.appliedStep = i;
      s.liveSinceMs = nowMs();
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
    run.pause({ reason: `${reason}; approvals still count, resume re-opens it` }, nowMs(), true);
    ctx.sync();
  }
}

async function watching(ctx: Ctx): Promise<void> {
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

async function finalizing(ctx: Ctx): Promise<void> {
  const { run, acts, input } = ctx;
  const s = run.s;
  const refs = refsOf(input);
  const registry = s.plan.registry;
  const champion = s.champion!;
  await checkpoint(ctx);
  if (!s.touched.championAlias) s.touched.championAlias = { previous: champion };
  await acts.setAlias({ model: s.model, alias: registry.championAlias, version: s.candidate, refs });
  if (s.trafficPercent !== 100) {
    await acts.setTraffic({ ...ctx.target(), percent: 100, stickyKey: s.plan.canary.assignment.stickyKey });
    s.trafficPercent = 100;
  }
  run.decide('promoted', 'promote', `${registry.championAlias} -> ${s.candidate}; 100% of traffic`, nowMs());
  ctx.sync();
  await checkpoint(ctx);
  const previousChallenger = s.touched.challengerAlias?.previous ?? null;
  await acts.setAlias({
    model: s.model,
    alias: registry.challengerAlias,
    version: previousChallenger === s.candidate ? null : previousChallenger,
    refs,
  });
  s.touched.challengerAlias = null;
  s.touched.championDecommissioned = true;
  await acts.decommissionVersion({ model: s.model, version: champion, refs });
  s.outcome = 'succeeded';
  s.stage = 'done';
  s.wait = null;
  await announce(ctx);
}
