/**
 * The promotion's side of the traffic lease (docs/fail-safe.md): taken before the candidate gets any
 * traffic, renewed on its own timer whatever step the promotion is in, released at the point of no
 * return. A renewal the data plane refuses because the lease ended means the gateway has already
 * sent traffic back to the champion: the promotion rolls back with that reason.
 */
import {
  ApplicationFailure,
  CancellationScope,
  condition,
  log,
  patched,
  proxyActivities,
  sleep,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities';
import { parseDuration } from '../plan/duration';
import { nowMs } from './clock';
import type { Ctx } from './context';
import { clip } from './run';

/** Lease calls are quick; a renewal that fails is simply tried again at the next period. */
const leasing = proxyActivities<Pick<Activities, 'acquireLease' | 'releaseLease'>>({
  startToCloseTimeout: '15 seconds',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '5s', maximumAttempts: 3 },
});

/** The holder id: stable across continue-as-new, different for every promotion. */
export function leaseHolder(): string {
  const info = workflowInfo();
  return `${info.workflowId}/${info.firstExecutionRunId}`;
}

function endedReason(err: unknown): string | null {
  const failure = err instanceof ApplicationFailure ? err : (err as { cause?: unknown }).cause;
  if (failure instanceof ApplicationFailure && failure.type === 'LeaseEnded') return failure.message;
  return null;
}

function errorText(err: unknown): string {
  const cause = (err as { cause?: { message?: string } }).cause;
  return clip(cause?.message ?? (err instanceof Error ? err.message : String(err)), 500);
}

/**
 * Takes the lease unless the promotion holds it already, and starts the renewal timer. A refusal
 * because this promotion's lease ended stops the promotion (rollback); any other failure fails the
 * step like any forward activity (retried first).
 */
export async function ensureLease(ctx: Ctx): Promise<void> {
  const { run } = ctx;
  const s = run.s;
  if (s.lease) {
    startRenewals(ctx);
    return;
  }
  const analysis = s.plan.analysis;
  const holder = leaseHolder();
  const ttlMs = parseDuration(analysis.lease);
  try {
    await ctx.acts.acquireLease({ ...ctx.target(), holder, ttlMs });
  } catch (err) {
    const ended = endedReason(err);
    if (ended) return leaseEnded(ctx, ended);
    throw err;
  }
  const at = new Date(nowMs()).toISOString();
  s.lease = {
    holder,
    ttlMs,
    renewEveryMs: parseDuration(analysis.leaseRenewal),
    acquiredAt: at,
    renewedAt: at,
    failures: 0,
    lastError: null,
  };
  run.decide(
    'lease',
    'promote',
    `traffic lease taken (${analysis.lease}, renewed every ${analysis.leaseRenewal})`,
    nowMs(),
    [holder],
  );
  startRenewals(ctx);
}

function leaseEnded(ctx: Ctx, reason: string): void {
  ctx.run.requestStop(
    { outcome: 'rolled_back', by: 'gateway', reason: `the traffic lease ended: ${reason}` },
    nowMs(),
  );
  ctx.sync();
}

/** Starts the renewal loop once per run; it ends when the lease is gone or the promotion stops. */
export function startRenewals(ctx: Ctx): void {
  if (ctx.live.renewing) return;
  ctx.live.renewing = true;
  // Not cancellable: a cancelled workflow still holds the lease until its rollback has sent the
  // traffic back (the loop ends by itself once the promotion is stopping).
  void CancellationScope.nonCancellable(() => renewals(ctx))
    .catch((err: unknown) =>
      log.error('lease renewals ended unexpectedly', { model: ctx.run.s.model, error: errorText(err) }),
    )
    .finally(() => (ctx.live.renewing = false));
}

async function renewals(ctx: Ctx): Promise<void> {
  const { run } = ctx;
  const s = run.s;
  for (;;) {
    const lease = s.lease;
    if (!lease || run.stopping || run.done) return;
    const held = lease.holder;
    // Sleep one whole period and look again: the timer is never cancelled. Waking early when the
    // lease went away cancelled a timer that could have fired meanwhile, and Temporal's
    // time-skipping test server refuses such a completion and strands the run (sdk-java#3088).
    // A loop that outlives its lease by one period only wakes and returns; it renews nothing.
    // Runs started before this change replay the early wake they recorded.
    if (patched('lease-renewal-full-period')) await sleep(lease.renewEveryMs);
    else await condition(() => s.lease?.holder !== held || run.stopping || run.done, lease.renewEveryMs);
    if (s.lease?.holder !== held || run.stopping || run.done) return;
    try {
      await leasing.acquireLease({ ...ctx.target(), holder: held, ttlMs: lease.ttlMs });
      lease.renewedAt = new Date(nowMs()).toISOString();
      if (lease.failures > 0)
        run.decide(
          'lease',
          'promote',
          `traffic lease renewed again after ${lease.failures} failed renewal(s)`,
          nowMs(),
        );
      lease.failures = 0;
      lease.lastError = null;
    } catch (err) {
      const ended = endedReason(err);
      if (ended) return leaseEnded(ctx, ended);
      // The data plane is unreachable: keep trying; if it cannot hear us for a whole lease, it
      // sends traffic back to the champion by itself, and the next renewal says so.
      lease.failures++;
      lease.lastError = errorText(err);
      if (lease.failures === 1)
        run.decide('lease', 'promote', 'renewing the traffic lease failed; retrying every period', nowMs(), [
          lease.lastError,
        ]);
      log.warn('lease renewal failed', { model: s.model, version: s.candidate, error: lease.lastError });
    }
  }
}

/**
 * Releases the lease at the point of no return. Answers false when the lease had already ended
 * (the gateway went back to the champion): then the promotion must roll back instead of finishing.
 */
export async function releaseLeaseForGood(ctx: Ctx): Promise<boolean> {
  const s = ctx.run.s;
  if (!s.lease) return true;
  const released = await ctx.acts.releaseLease({ ...ctx.target(), holder: s.lease.holder });
  if (released && released.state !== 'released') {
    leaseEnded(
      ctx,
      `${released.state}${released.reason ? ` (${released.reason})` : ''}; traffic went back to ${released.champion}`,
    );
    return false;
  }
  s.lease = null;
  return true;
}

/** Forgets the lease after a route that ended it (all traffic back on the champion). */
export function leaseGone(ctx: Ctx): void {
  ctx.run.s.lease = null;
}

/** Best-effort release during rollback (the all-to-champion route already ended it). */
export async function releaseQuietly(ctx: Ctx): Promise<void> {
  const s = ctx.run.s;
  if (!s.lease) return;
  try {
    await leasing.releaseLease({ ...ctx.target(), holder: s.lease.holder });
  } catch {
    // The route to the champion ended it already; an unreachable gateway expires it anyway.
  }
  s.lease = null;
}
