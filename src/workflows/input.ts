/**
 * The workflow's own check of its input, run before it touches anything. Anyone who can reach the
 * Temporal frontend can start `promotionWorkflow` with any JSON, bypassing the CLI: the plan must
 * validate, the names must be names, the plan hash must be the plan's, and carried state is
 * accepted only from an earlier run of the same workflow (continue-as-new). Pure.
 */
import { hashPlan } from '../plan/hash';
import { checkPlan } from '../plan/validate';
import type { PromotionInput } from './types';

/** Model and version names: the registry's safe subset. */
export const NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;
const USER = /^[^\p{Cc}\p{Zl}\p{Zp}]{1,128}$/u;

export interface RunInfo {
  workflowId: string;
  /** Set only when this run continues an earlier one. */
  continuedFromExecutionRunId?: string;
}

/** Problems with the input, each `field: message`; empty when the input is acceptable. */
export function inputProblems(input: unknown, info: RunInfo): string[] {
  const o = input && typeof input === 'object' ? (input as Partial<PromotionInput>) : null;
  if (!o) return ['input: expected an object {model, candidate, plan, planHash, startedBy}'];
  const problems: string[] = [];
  if (typeof o.model !== 'string' || !NAME.test(o.model))
    problems.push('model: expected a model name (letters, digits and . _ -, at most 100)');
  if (typeof o.candidate !== 'string' || !NAME.test(o.candidate))
    problems.push('candidate: expected a version (letters, digits and . _ -, at most 100)');
  if (typeof o.startedBy !== 'string' || !USER.test(o.startedBy))
    problems.push('startedBy: expected a user name (printable, one line, at most 128)');
  const checked = checkPlan(o.plan);
  if (checked.plan === undefined) {
    problems.push(...checked.issues.slice(0, 10).map((i) => `plan.${i.path || '(root)'}: ${i.message}`));
  } else if (typeof o.planHash !== 'string' || o.planHash !== hashPlan(checked.plan)) {
    problems.push(
      'planHash: does not match the plan (expected the sha256 of the plan with defaults applied)',
    );
  }
  const options = o.options as Record<string, unknown> | undefined;
  if (options !== undefined) {
    const after = options?.continueAsNewAfterEvents;
    if (
      typeof options !== 'object' ||
      options === null ||
      (after !== undefined && (typeof after !== 'number' || !Number.isInteger(after) || after < 50))
    )
      problems.push('options.continueAsNewAfterEvents: expected a whole number of events, at least 50');
  }
  if (o.carried !== undefined) {
    const c = o.carried as Partial<NonNullable<PromotionInput['carried']>> | null;
    if (!info.continuedFromExecutionRunId)
      problems.push('carried: only a promotion continuing as new may carry state');
    else if (
      !c ||
      typeof c !== 'object' ||
      c.id !== info.workflowId ||
      c.model !== o.model ||
      c.candidate !== o.candidate ||
      c.planHash !== o.planHash
    )
      problems.push('carried: state of another promotion');
  }
  return problems;
}
