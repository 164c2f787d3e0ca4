/**
 * Continue-as-new: when history grows, the run hands its whole state to a fresh run of the same
 * workflow. Shared by the main loop and the rollback (which may retry for a long time).
 */
import { allHandlersFinished, condition, continueAsNew, log, workflowInfo } from '@temporalio/workflow';
import { nowMs } from './clock';
import type { Ctx } from './context';
import type { promotionWorkflow } from './promotion';

export async function maybeContinueAsNew(ctx: Ctx): Promise<void> {
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
