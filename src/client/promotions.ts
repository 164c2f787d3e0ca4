/** Client helpers: start, message and read promotions. Used by the CLI, the demo and tests. */
import {
  Client,
  WorkflowExecutionAlreadyStartedError,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type WorkflowHandle,
} from '@temporalio/client';
import { ConflictError, NotAllowedError, NotFoundError, InvalidInputError } from '../common/errors';
import type { Plan } from '../plan/schema';
import { hashPlan } from '../plan/load';
import { assertRecovered } from './recovery';
import {
  abortUpdate,
  approveUpdate,
  pauseUpdate,
  rejectUpdate,
  resumeUpdate,
  statusQuery,
  type MessageResult,
} from '../workflows/messages';
import {
  CANDIDATE,
  DEFAULT_TASK_QUEUE,
  MODEL,
  OUTCOME,
  PHASE,
  TRAFFIC,
  promotionId,
} from '../workflows/search';
import type { promotionWorkflow } from '../workflows/promotion';
import type { PromotionInput, PromotionResult, PromotionStatus } from '../workflows/types';

const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

/** A promotion id, or a model name standing for its promotion. */
export function resolveId(idOrModel: string): string {
  return idOrModel.startsWith('promotion-') ? idOrModel : promotionId(idOrModel);
}

export interface StartOptions {
  model: string;
  version: string;
  plan: Plan;
  startedBy: string;
  taskQueue?: string;
  continueAsNewAfterEvents?: number;
}

export interface ListedPromotion {
  id: string;
  runId: string;
  model: string | null;
  candidate: string | null;
  phase: string | null;
  outcome: string | null;
  trafficPercent: number | null;
  status: string;
  startTime: string;
}

export class Promotions {
  constructor(
    readonly client: Client,
    readonly taskQueue = process.env.PROMOTE_TASK_QUEUE ?? DEFAULT_TASK_QUEUE,
  ) {}

  /**
   * Starts a promotion. The workflow id is derived from the model, and the server refuses a second
   * running workflow with the same id, so of two concurrent starts exactly one wins.
   */
  async start(opts: StartOptions): Promise<{ id: string; runId: string; planHash: string }> {
    if (!NAME.test(opts.model))
      throw new InvalidInputError(
        `--model "${opts.model}" is not a valid model name (letters, digits, . _ -)`,
      );
    if (!NAME.test(opts.version))
      throw new InvalidInputError(
        `--version "${opts.version}" is not a valid version (letters, digits, . _ -)`,
      );
    const id = promotionId(opts.model);
    // A promotion that died after acting (terminated, failed) may have left traffic, aliases or
    // servers behind: nothing new starts on top of that until `promote recover` has run.
    await assertRecovered(this.client, opts.model);
    const planHash = hashPlan(opts.plan);
    const input: PromotionInput = {
      model: opts.model,
      candidate: opts.version,
      plan: opts.plan,
      planHash,
      startedBy: opts.startedBy,
      ...(opts.continueAsNewAfterEvents
        ? { options: { continueAsNewAfterEvents: opts.continueAsNewAfterEvents } }
        : {}),
    };
    try {
      const handle = await this.client.workflow.start<typeof promotionWorkflow>('promotionWorkflow', {
        workflowId: id,
        taskQueue: opts.taskQueue ?? this.taskQueue,
        args: [input],
        workflowIdConflictPolicy: 'FAIL',
        workflowIdReusePolicy: 'ALLOW_DUPLICATE',
        typedSearchAttributes: [
          { key: MODEL, value: opts.model },
          { key: CANDIDATE, value: opts.version },
          { key: PHASE, value: 'staging' },
          { key: TRAFFIC, value: 0 },
        ],
        memo: {
          model: opts.model,
          candidate: opts.version,
          planHash,
          startedBy: opts.startedBy,
          description: opts.plan.description ?? '',
        },
      });
      return { id, runId: handle.firstExecutionRunId, planHash };
    } catch (err) {
      if (err instanceof WorkflowExecutionAlreadyStartedError) {
        const running = await this.status(id).catch(() => null);
        const what = running ? `candidate ${running.candidate}, ${running.phase}` : 'running';
        throw new ConflictError(
          `a promotion of ${opts.model} is already running: ${id} (${what}); wait for it or abort it first`,
        );
      }
      throw err;
    }
  }

  handle(id: string): WorkflowHandle<typeof promotionWorkflow> {
    return this.client.workflow.getHandle<typeof promotionWorkflow>(resolveId(id));
  }

  /** Status of the latest run: queried while running, from the result once closed. */
  async status(id: string): Promise<PromotionStatus> {
    const handle = this.handle(id);
    try {
      const description = await handle.describe();
      if (description.status.name === 'RUNNING') return await handle.query(statusQuery);
      if (description.status.name === 'COMPLETED') return (await handle.result()).status;
      // Failed or terminated runs cannot answer from a result; a query replays their history.
      return await handle.query(statusQuery);
    } catch (err) {
      if (err instanceof WorkflowNotFoundError) throw new NotFoundError(`no promotion ${resolveId(id)}`);
      throw err;
    }
  }

  async result(id: string): Promise<PromotionResult> {
    return await this.handle(id).result();
  }

  /** Approve or reject through an update: the answer says at once whether the vote counted. */
  async vote(id: string, kind: 'approve' | 'reject', by: string, text?: string): Promise<MessageResult> {
    const handle = this.handle(id);
    try {
      return kind === 'approve'
        ? await handle.executeUpdate(approveUpdate, { args: [{ by, ...(text ? { comment: text } : {}) }] })
        : await handle.executeUpdate(rejectUpdate, { args: [{ by, reason: text ?? '' }] });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError) {
        throw new NotAllowedError(err.cause?.message ?? err.message);
      }
      if (err instanceof WorkflowNotFoundError)
        throw new NotFoundError(`no running promotion ${resolveId(id)}`);
      throw err;
    }
  }

  /** Abort, pause or resume through an update: the answer says at once whether it was accepted. */
  async control(
    id: string,
    kind: 'abort' | 'pause' | 'resume',
    by: string,
    reason?: string,
  ): Promise<MessageResult> {
    const handle = this.handle(id);
    const update = kind === 'abort' ? abortUpdate : kind === 'pause' ? pauseUpdate : resumeUpdate;
    try {
      return await handle.executeUpdate(update, {
        args: [{ by, ...(reason !== undefined ? { reason } : {}) }],
      });
    } catch (err) {
      if (err instanceof WorkflowUpdateFailedError)
        throw new NotAllowedError(err.cause?.message ?? err.message);
      if (err instanceof WorkflowNotFoundError) {
        const closed = await this.status(id).catch(() => null);
        if (closed?.outcome)
          throw new NotAllowedError(`${resolveId(id)} has already completed (${closed.outcome})`);
        throw new NotFoundError(`no running promotion ${resolveId(id)}`);
      }
      throw err;
    }
  }

  async list(filter: { model?: string; phase?: string; limit?: number } = {}): Promise<ListedPromotion[]> {
    const clauses = [`WorkflowType = 'promotionWorkflow'`];
    const quote = (v: string) => `'${v.replace(/'/g, '')}'`;
    if (filter.model) clauses.push(`PromotionModel = ${quote(filter.model)}`);
    if (filter.phase) clauses.push(`PromotionPhase = ${quote(filter.phase)}`);
    const out: ListedPromotion[] = [];
    for await (const wf of this.client.workflow.list({ query: clauses.join(' AND ') })) {
      const sa = wf.typedSearchAttributes;
      out.push({
        id: wf.workflowId,
        runId: wf.runId,
        model: sa.get(MODEL) ?? null,
        candidate: sa.get(CANDIDATE) ?? null,
        phase: sa.get(PHASE) ?? null,
        outcome: sa.get(OUTCOME) ?? null,
        trafficPercent: sa.get(TRAFFIC) ?? null,
        status: wf.status.name,
        startTime: wf.startTime.toISOString(),
      });
      if (out.length >= (filter.limit ?? 100)) break;
    }
    return out;
  }
}
