/** How the main loop unwinds to the rollback once a stop has been requested. */
import { isCancellation } from '@temporalio/workflow';
import { nowMs } from './clock';
import type { PromotionRun } from './run';
import type { StopRequest } from './types';

/** Thrown inside the workflow to unwind to the rollback once a stop has been requested. */
export class StopSignal extends Error {}

/** Turns whatever ended the main loop into a stop request (the first request wins). */
export function recordStop(run: PromotionRun, err: unknown): void {
  // A stop already requested explains whatever unwound the loop (including the cancellation of
  // the forward steps that the stop itself caused).
  if (err instanceof StopSignal || run.stopping) return;
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

export function stopNow(run: PromotionRun, stop: StopRequest, evidence: string[] = []): never {
  run.requestStop(stop, nowMs(), evidence);
  throw new StopSignal();
}
