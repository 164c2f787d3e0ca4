/**
 * The project's error hierarchy. Each error has a stable `type` that survives the trip through
 * Temporal (it becomes the ApplicationFailure type) and maps to a CLI exit code. A plain `Error`
 * means a bug.
 */

/** One problem in user input, located by a dotted path such as `canary.steps[1].traffic`. */
export interface Issue {
  path: string;
  message: string;
}

export abstract class PromoteError extends Error {
  abstract readonly type: string;
}

/** The plan file (or another input document) is invalid; `issues` lists every problem found. */
export class PlanError extends PromoteError {
  readonly type = 'PlanError';
  constructor(
    readonly source: string,
    readonly issues: Issue[],
  ) {
    super(
      `${source}: ${issues.length} problem${issues.length === 1 ? '' : 's'}: ${issues.map((i) => `${i.path}: ${i.message}`).join('; ')}`,
    );
  }
}

/** Bad command-line or request input that is not a plan. */
export class InvalidInputError extends PromoteError {
  readonly type = 'InvalidInput';
}

export class NotFoundError extends PromoteError {
  readonly type = 'NotFound';
}

/** The request conflicts with current state (e.g. a promotion of the model is already running). */
export class ConflictError extends PromoteError {
  readonly type = 'Conflict';
}

/** The workflow refused the request (not an allowed approver, self-approval, no pending approval...). */
export class NotAllowedError extends PromoteError {
  readonly type = 'NotAllowed';
}

/**
 * The promotion's traffic lease ended without its release (not renewed in time, or revoked by an
 * operator): the data plane has sent traffic back to the champion and will not give it back.
 */
export class LeaseEndedError extends PromoteError {
  readonly type = 'LeaseEnded';
}

/** Formats issues one per line as `path: message`. */
export function formatIssues(issues: Issue[]): string {
  return issues.map((i) => `${i.path || '(root)'}: ${i.message}`).join('\n');
}
