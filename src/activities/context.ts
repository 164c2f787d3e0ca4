/** What every activity gets: the provider catalog and error conversion at the Temporal boundary. */
import { ApplicationFailure, Context } from '@temporalio/activity';
import { PromoteError } from '../common/errors';
import { resolveProviders, type ProviderCatalog } from '../providers/catalog';
import type { ProviderRefs, ProviderSet } from '../providers/types';

/** The promotion an activity acts for. */
export interface Target {
  promotionId: string;
  model: string;
  candidate: string;
  champion: string;
  refs: ProviderRefs;
}

export class ActivityContext {
  constructor(readonly catalog: ProviderCatalog) {}

  providers(refs: ProviderRefs): ProviderSet {
    return guard(() => resolveProviders(this.catalog, refs));
  }
}

/** Logs with the promotion's identity on every line (the SDK adds workflow and activity ids). */
export function log(
  target: { model: string; candidate?: string },
  message: string,
  extra: Record<string, unknown> = {},
): void {
  Context.current().log.info(message, { model: target.model, version: target.candidate, ...extra });
}

/**
 * Runs `fn`, turning the project's typed errors into non-retryable ApplicationFailures of the same
 * type (retrying cannot fix a missing version); anything else stays retryable.
 */
export function guard<T>(fn: () => T): T {
  try {
    const result = fn();
    if (result instanceof Promise) return result.catch(rethrow) as T;
    return result;
  } catch (err) {
    return rethrow(err);
  }
}

function rethrow(err: unknown): never {
  if (err instanceof PromoteError) {
    throw ApplicationFailure.create({ type: err.type, message: err.message, nonRetryable: true });
  }
  throw err;
}

/** Measuring failures become measurements with phase Error, so the plan decides what they mean. */
export async function measuredOrError<T extends { phase: string }>(
  fn: () => Promise<T>,
  onError: (message: string) => T,
): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    return onError(err instanceof Error ? err.message : String(err));
  }
}
