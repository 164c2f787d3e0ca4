/**
 * The promotion workflow: staging -> gates -> shadow -> canary steps (approval, shift, bake)
 * -> watch -> promoted; any stop request runs the rollback saga. The state and the message rules
 * live in PromotionRun, the stages in ./stages.ts; this file is the wiring and the main loop.
 */
import {
  ApplicationFailure,
  CancellationScope,
  ContinueAsNew,
  condition,
  setHandler,
  upsertMemo,
  upsertSearchAttributes,
  workflowInfo,
} from '@temporalio/workflow';
import { nowMs } from './clock';
import { refsOf, type Ctx } from './context';
import { inputProblems } from './input';
import { leaseHolder, startRenewals } from './lease';
import type { RecoveryRecord } from './recovery-record';
import {
  abortSignal,
  abortUpdate,
  approveSignal,
  approveUpdate,
  pauseSignal,
  pauseUpdate,
  rejectSignal,
  rejectUpdate,
  resumeSignal,
  resumeUpdate,
  statusQuery,
  type MessageResult,
} from './messages';
import { forward } from './options';
import { rollback } from './rollback';
import { initialState, PromotionRun } from './run';
import { OUTCOME, PHASE, TRAFFIC } from './search';
import { canary, finalizing, finish, shadow, staging, validating, watching } from './stages';
import { recordStop } from './stop';
import type { PromotionInput, PromotionResult } from './types';

export async function promotionWorkflow(input: PromotionInput): Promise<PromotionResult> {
  const info = workflowInfo();
  // Anyone who can reach Temporal can start this workflow: check the input before touching anything.
  const problems = inputProblems(input, info);
  if (problems.length > 0)
    throw ApplicationFailure.create({
      type: 'InvalidInput',
      message: `promotionWorkflow refused its input: ${problems.join('; ')}`,
      nonRetryable: true,
    });
  const run = new PromotionRun(input.carried ?? initialState(input, info.workflowId, nowMs()));
  // State carried from a build without traffic splits: the checks start from the live split, so
  // a candidate with traffic is never left unwatched.
  run.s.splits ??= [];
  run.s.srmAccepted ??= false;
  // ... and without slices.
  run.s.sliceValues ??= {};
  run.s.plan.slices ??= [];
  if (run.s.splits.length === 0 && run.s.trafficPercent > 0 && run.s.liveSinceMs !== null)
    run.s.splits.push({ fromMs: run.s.liveSinceMs, toMs: null, percent: run.s.trafficPercent });
  if (!input.carried)
    run.decide('started', input.startedBy, `promote ${input.model} ${input.candidate}`, nowMs(), [
      input.planHash,
    ]);
  const ctx = makeContext(run, input);
  installHandlers(run, ctx.sync);
  ctx.sync();
  if (run.s.lease && !run.stopping) startRenewals(ctx);

  if (!run.stopping && !run.done) {
    // The forward steps run in their own scope, cancelled as soon as a stop is requested, so an
    // abort does not wait for a step that is retrying through an outage.
    const steps = new CancellationScope();
    void condition(() => run.stopping)
      .then(() => steps.cancel())
      .catch(() => undefined);
    try {
      await steps.run(() => advance(ctx));
    } catch (err) {
      if (err instanceof ContinueAsNew) throw err;
      // Past the point of no return nothing rolls back: the promotion finishes below.
      if (!run.s.committed) recordStop(run, err);
    }
  }
  // Compensations, and the steps after the point of no return, run even when the workflow itself
  // is being cancelled.
  if (run.s.committed && !run.done) await CancellationScope.nonCancellable(() => finish(ctx));
  else if (run.stopping && !run.done) await CancellationScope.nonCancellable(() => rollback(ctx));
  ctx.sync();
  return { outcome: run.s.outcome!, reason: run.s.stop?.reason ?? null, status: run.status() };
}

/** What `promote recover` needs when the workflow can no longer tell it (kept in the memo). */
function recoveryRecord(run: PromotionRun): RecoveryRecord {
  const s = run.s;
  return {
    champion: s.champion,
    candidate: s.candidate,
    stage: s.stage,
    trafficPercent: s.trafficPercent,
    committed: s.committed,
    outcome: s.outcome,
    leaseHolder: leaseHolder(),
    touched: s.touched,
    championAlias: s.plan.registry.championAlias,
    challengerAlias: s.plan.registry.challengerAlias,
    stickyKey: s.plan.canary.assignment.stickyKey,
    refs: refsOf({ plan: s.plan } as PromotionInput),
  };
}

function makeContext(run: PromotionRun, input: PromotionInput): Ctx {
  const refs = refsOf(input);
  let synced = '';
  let recorded = '';
  return {
    run,
    input,
    acts: forward,
    live: { renewing: false },
    target: () => ({
      promotionId: run.s.id,
      model: run.s.model,
      candidate: run.s.candidate,
      champion: run.s.champion ?? '',
      refs,
    }),
    sync: () => {
      const record = JSON.stringify(recoveryRecord(run));
      if (record !== recorded) {
        recorded = record;
        upsertMemo({ recovery: JSON.parse(record) as unknown });
      }
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
  const apply: Record<'approve' | 'reject' | 'abort' | 'pause' | 'resume', (p: unknown) => MessageResult> = {
    approve: (p) => run.vote('approve', p, nowMs()),
    reject: (p) => run.vote('reject', p, nowMs()),
    abort: (p) => run.abort(p, nowMs()),
    pause: (p) => run.pause(p, nowMs()),
    resume: (p) => run.resume(p, nowMs()),
  };
  setHandler(approveSignal, (p) => void after(apply.approve(p)));
  setHandler(rejectSignal, (p) => void after(apply.reject(p)));
  setHandler(abortSignal, (p) => void after(apply.abort(p)));
  setHandler(pauseSignal, (p) => void after(apply.pause(p)));
  setHandler(resumeSignal, (p) => void after(apply.resume(p)));
  // Updates answer with the same rules; a refusal is a failed update carrying the reason.
  const answer = (kind: keyof typeof apply) => (p: unknown) => {
    const result = after(apply[kind](p));
    if (!result.accepted)
      throw ApplicationFailure.create({ type: 'NotAllowed', message: result.message, nonRetryable: true });
    return result;
  };
  setHandler(approveUpdate, answer('approve'));
  setHandler(rejectUpdate, answer('reject'));
  setHandler(abortUpdate, answer('abort'));
  setHandler(pauseUpdate, answer('pause'));
  setHandler(resumeUpdate, answer('resume'));
  setHandler(statusQuery, () => run.status());
}

async function advance(ctx: Ctx): Promise<void> {
  const s = ctx.run.s;
  if (s.stage === 'staging') await staging(ctx);
  if (s.stage === 'validating') await validating(ctx);
  if (s.stage === 'shadow') await shadow(ctx);
  if (s.stage === 'canary') await canary(ctx);
  if (s.stage === 'watching') await watching(ctx);
  if (s.stage === 'finalizing') await finalizing(ctx);
}
