/**
 * Waiting and watching: durable waits that wake for messages and run guardrail rounds on the
 * plan's interval, and the end-of-bake conclusion (all Pass, or extend, or what the plan says).
 */
import { condition } from '@temporalio/workflow';
import { assessSampleRatio } from '../analysis/guardrail';
import { assessAllLabels, assessGuardrails, declaredSlices } from '../analysis/slices';
import { nextAction, type Action, type PolicyInput } from '../analysis/policy';
import type { Assessment } from '../analysis/types';
import { parseDuration } from '../plan/duration';
import { nowMs } from './clock';
import type { Ctx } from './context';
import { maybeContinueAsNew } from './handover';
import { measuring } from './options';
import { StopSignal, stopNow } from './stop';
import type { SliceQuery } from './types';

export interface HoldOptions {
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
export async function hold(ctx: Ctx, id: string, opts: HoldOptions): Promise<'elapsed' | 'until'> {
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
export async function checkpoint(ctx: Ctx): Promise<void> {
  if (ctx.run.stopping) throw new StopSignal();
  if (ctx.run.s.paused)
    await hold(ctx, `paused:${ctx.run.s.paused.at}`, {
      countPaused: false,
      until: () => !ctx.run.s.paused,
      ...liveChecks(ctx),
    });
}

/** Periodic checks while live traffic reaches the candidate; none before the first shift. */
export function liveChecks(ctx: Ctx): Pick<HoldOptions, 'check' | 'checkEveryMs'> {
  const s = ctx.run.s;
  if (s.trafficPercent === 0 || s.liveSinceMs === null) return {};
  return { check: () => checkGuardrails(ctx), checkEveryMs: parseDuration(s.plan.analysis.interval) };
}

/**
 * One round of live assessments over every split since the first shift: the sample-ratio check,
 * the guardrails and, in the watch, the delayed labels. Recorded in the state; the round's
 * assessments are returned (the caller asks `nextAction` what they mean).
 */
async function assessRound(ctx: Ctx): Promise<{ srm: Assessment | null; assessments: Assessment[] }> {
  const { run } = ctx;
  const s = run.s;
  const toMs = nowMs();
  const assessments: Assessment[] = [];
  let srm: Assessment | null = null;
  const sliceCount = declaredSlices(s.plan.slices);
  if (s.splits.length > 0) {
    const live = await measuring.measureLive({
      ...ctx.target(),
      splits: s.splits,
      toMs,
      slices: sliceQueries(ctx),
    });
    srm = assessSampleRatio(live, s.plan.analysis.srm.alpha);
    assessments.push(...assessGuardrails(s.plan.guardrails, live, sliceCount));
    // Top-N values once chosen are kept and only added to (up to N): at most N are ever tested.
    for (const slice of s.plan.slices) {
      if (slice.top === undefined) continue;
      const known = chosen(s.sliceValues, slice.name);
      for (const l of live.slices ?? [])
        if (
          l.name === slice.name &&
          l.error === undefined &&
          !known.includes(l.value) &&
          known.length < slice.top
        )
          known.push(l.value);
      s.sliceValues[slice.name] = known;
    }
  }
  const labels = s.plan.watch?.labels;
  if (s.stage === 'watching' && labels && s.splits.length > 0) {
    const comparison = await measuring.measureLabels({
      ...ctx.target(),
      fromMs: s.splits[0]!.fromMs,
      toMs,
      maturity: labels.maturity,
      slices: sliceQueries(ctx).map((q) => ({ ...q, top: null })),
    });
    assessments.push(...assessAllLabels(labels, comparison, sliceCount));
  }
  run.recordChecks(srm ? [srm, ...assessments] : assessments, nowMs());
  return { srm, assessments };
}

/** The top-N values chosen so far for a slice (own entries only: a name may be `constructor`). */
function chosen(values: Record<string, string[]>, name: string): string[] {
  const v = Object.hasOwn(values, name) ? values[name] : undefined;
  return Array.isArray(v) ? [...v] : [];
}

/** The plan's slices with the values known so far (listed, or chosen from the traffic). */
function sliceQueries(ctx: Ctx): SliceQuery[] {
  const s = ctx.run.s;
  return s.plan.slices.map((slice) => ({
    name: slice.name,
    key: slice.key,
    values: slice.values ?? chosen(s.sliceValues, slice.name),
    top: slice.values ? null : (slice.top ?? null),
  }));
}

/** Does what the policy says: roll back, pause, or (returned) extend or continue. */
function act(ctx: Ctx, action: Action): 'continue' | 'extend' {
  const { run } = ctx;
  switch (action.kind) {
    case 'rollback':
      return stopNow(run, { outcome: 'rolled_back', by: 'promote', reason: action.reason }, action.evidence);
    case 'pause':
      // Looks go on while paused: a verdict that still says pause leaves the pause as it is.
      if (!run.s.paused) {
        run.systemPause(action.reason, nowMs(), action.cause);
        if (action.evidence.length > 0)
          run.decide('check', 'promote', action.reason, nowMs(), action.evidence);
        ctx.sync();
      }
      return 'continue';
    case 'extend':
      run.s.extensions++;
      run.decide('bake_extended', 'promote', action.reason, nowMs(), action.evidence);
      return 'extend';
    case 'continue':
      return 'continue';
  }
}

function policyInput(
  ctx: Ctx,
  round: Awaited<ReturnType<typeof assessRound>>,
): Omit<PolicyInput, 'moment' | 'what'> {
  const s = ctx.run.s;
  return {
    trafficPercent: s.trafficPercent,
    srm: round.srm,
    assessments: round.assessments,
    consecutiveErrors: s.consecutiveErrors,
    extensions: s.extensions,
    srmAccepted: s.srmAccepted,
    analysis: s.plan.analysis,
    labelsPassWhen: s.plan.watch?.labels?.passWhen,
  };
}

/** A periodic look while traffic is live: stops on a mismatch, a Fail or repeated errors. */
export async function checkGuardrails(ctx: Ctx): Promise<void> {
  const round = await assessRound(ctx);
  act(ctx, nextAction({ ...policyInput(ctx, round), moment: 'look', what: 'look' }));
}

/**
 * The end of a bake (or the watch): a fresh round must be all Pass. Otherwise the wait is extended
 * (up to maxExtensions), then the plan decides: roll back, or pause for a human whose resume
 * overrides the verdict. NoData and Inconclusive never pass silently.
 */
export async function conclude(ctx: Ctx, what: string, extend: () => Promise<void>): Promise<void> {
  for (;;) {
    const round = await assessRound(ctx);
    const action = nextAction({ ...policyInput(ctx, round), moment: 'end', what });
    if (act(ctx, action) === 'extend') {
      await extend();
      continue;
    }
    // A pause (here or by the round) holds until a human resumes or aborts.
    await checkpoint(ctx);
    return;
  }
}
