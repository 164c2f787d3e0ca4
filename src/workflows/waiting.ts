/**
 * Waiting and watching: durable waits that wake for messages and run guardrail rounds on the
 * plan's interval, and the end-of-bake conclusion (all Pass, or extend, or what the plan says).
 */
import { condition } from '@temporalio/workflow';
import { assessGuardrail } from '../analysis/guardrail';
import { assessLabels } from '../analysis/labels';
import { combineVerdicts, type Assessment, type Verdict } from '../analysis/types';
import { parseDuration } from '../plan/duration';
import { nowMs } from './clock';
import type { Ctx } from './context';
import { maybeContinueAsNew } from './handover';
import { measuring } from './options';
import { StopSignal, stopNow } from './stop';

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

/** One round of guardrail (and, in the watch, label) assessments; stops on Fail. */
export async function checkGuardrails(ctx: Ctx): Promise<Verdict> {
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
export async function conclude(ctx: Ctx, what: string, extend: () => Promise<void>): Promise<void> {
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
    run.systemPause(`${reason}; resume to continue anyway, abort to roll back`, nowMs());
    ctx.sync();
    await checkpoint(ctx);
    return;
  }
}
