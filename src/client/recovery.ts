/**
 * Recovery from the client's side: finding what a model's last promotion left behind (from its
 * memo, readable even after the run was terminated), refusing new promotions until it is
 * repaired, and running the recovery workflow.
 */
import {
  Client,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  type WorkflowExecutionDescription,
} from '@temporalio/client';
import { ConflictError, NotAllowedError, NotFoundError } from '../common/errors';
import {
  recoveryId,
  type RecoveryInput,
  type RecoveryReport,
  type recoverWorkflow,
} from '../workflows/recovery';
import { needsRecovery, type RecoveryRecord } from '../workflows/recovery-record';
import { promotionId } from '../workflows/search';

export interface LastPromotion {
  id: string;
  runId: string;
  /** RUNNING, COMPLETED, TERMINATED, FAILED, TIMED_OUT, CANCELLED... */
  status: string;
  record: RecoveryRecord | undefined;
  description: WorkflowExecutionDescription;
}

/** The latest run of the model's promotion, or null when it never had one. */
export async function lastPromotion(client: Client, model: string): Promise<LastPromotion | null> {
  const id = promotionId(model);
  try {
    const description = await client.workflow.getHandle(id).describe();
    const memo = description.memo as { recovery?: RecoveryRecord } | undefined;
    return {
      id,
      runId: description.runId,
      status: description.status.name,
      record: memo?.recovery,
      description,
    };
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return null;
    throw err;
  }
}

/** Whether a completed recovery covers this run of the promotion. */
async function recovered(client: Client, model: string, runId: string): Promise<boolean> {
  try {
    const description = await client.workflow.getHandle(recoveryId(model)).describe();
    const memo = description.memo as { promotionRunId?: string } | undefined;
    if (description.status.name !== 'COMPLETED' || memo?.promotionRunId !== runId) return false;
    const report = (await client.workflow.getHandle(recoveryId(model)).result()) as RecoveryReport;
    return report.consistent;
  } catch (err) {
    if (err instanceof WorkflowNotFoundError) return false;
    throw err;
  }
}

/**
 * Throws ConflictError (exit 3) when the model's last promotion ended without finishing (terminated,
 * failed, timed out) after it had acted, and no recovery has repaired it since.
 */
export async function assertRecovered(client: Client, model: string): Promise<void> {
  const last = await lastPromotion(client, model);
  if (!last || last.status === 'RUNNING' || last.status === 'COMPLETED') return;
  if (!needsRecovery(last.record)) return;
  if (await recovered(client, model, last.runId)) return;
  const r = last.record!;
  throw new ConflictError(
    `the last promotion of ${model} (${last.id}, run ${last.runId}) ended ${last.status} in ${r.stage} with ${r.trafficPercent}% on ${r.candidate} and may have left traffic, aliases or model servers behind; repair it first: promote recover ${model} --reason "<why>"`,
  );
}

export interface RecoverOptions {
  model: string;
  by: string;
  reason: string;
  /** Terminate a promotion that is still running (stuck) before recovering. */
  force: boolean;
  taskQueue: string;
  /** How long to wait for a worker to finish the recovery, ms. */
  timeoutMs: number;
}

/** Runs (or joins) the recovery of a model and returns its report. */
export async function recover(client: Client, opts: RecoverOptions): Promise<RecoveryReport> {
  const last = await lastPromotion(client, opts.model);
  if (!last) throw new NotFoundError(`no promotion of ${opts.model} to recover from`);
  if (last.status === 'RUNNING') {
    if (!opts.force) {
      const task = last.description.raw.pendingWorkflowTask;
      const stuck =
        task && (task.attempt ?? 0) > 1
          ? ` (its workflow task has been attempted ${task.attempt} times)`
          : '';
      throw new NotAllowedError(
        `${last.id} is still running${stuck}: abort it (promote abort ${opts.model} --reason ...), or pass --force to terminate it and recover`,
      );
    }
    await client.workflow
      .getHandle(last.id, last.runId)
      .terminate(`promote recover --force by ${opts.by}: ${opts.reason}`);
    return recover(client, { ...opts, force: false });
  }
  if (!last.record)
    throw new NotFoundError(
      `${last.id} (run ${last.runId}) kept no recovery record: nothing it did is known`,
    );
  const input: RecoveryInput = {
    model: opts.model,
    promotionId: last.id,
    promotionRunId: last.runId,
    promotionStatus: last.status,
    record: last.record,
    by: opts.by,
    reason: opts.reason,
  };
  let handle;
  try {
    handle = await client.workflow.start<typeof recoverWorkflow>('recoverWorkflow', {
      workflowId: recoveryId(opts.model),
      taskQueue: opts.taskQueue,
      args: [input],
      workflowIdConflictPolicy: 'USE_EXISTING',
      workflowIdReusePolicy: 'ALLOW_DUPLICATE',
      memo: { promotionRunId: last.runId, model: opts.model },
    });
  } catch (err) {
    if (err instanceof WorkflowExecutionAlreadyStartedError)
      throw new ConflictError(`a recovery of ${opts.model} is already running (${recoveryId(opts.model)})`);
    throw err;
  }
  const timeout = new Promise<'timeout'>((resolve) =>
    setTimeout(() => resolve('timeout'), opts.timeoutMs).unref(),
  );
  const result = await Promise.race([handle.result(), timeout]);
  if (result === 'timeout')
    throw new Error(
      `the recovery ${recoveryId(opts.model)} is queued but no worker finished it within ${Math.round(opts.timeoutMs / 1000)}s: is a worker running on task queue ${opts.taskQueue}? It completes when one runs (traffic is already protected by the gateway's lease)`,
    );
  return result;
}

/** Human lines for a recovery report. */
export function formatRecovery(report: RecoveryReport): string {
  const lines = [
    `recovering ${report.model} from ${report.promotionId} (run ${report.promotionRunId}): ${report.outcome === 'succeeded' ? 'it had passed its point of no return, finishing it' : 'restoring the champion'}`,
    ...report.steps.map(
      (s) => `  ${s.changed ? 'fixed' : 'ok   '} ${s.step}${s.before ? ` (was ${s.before})` : ''}`,
    ),
  ];
  lines.push(
    report.consistent
      ? `consistent: ${report.model} is back in a known state`
      : `NOT consistent: ${report.problems.join('; ')}`,
  );
  return lines.join('\n');
}
