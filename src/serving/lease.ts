/**
 * The traffic lease: the fail-safe that returns traffic to the champion when nothing else works.
 *
 * While a candidate has any live traffic (a split route, or a shadow), the data plane holds a
 * lease from the promotion, which the workflow renews on a timer. If the lease is not renewed in
 * time (worker gone, workflow stuck or terminated, Temporal down), the data plane routes 100% to
 * the champion recorded in the lease by itself, and never gives traffic back to the candidate
 * under that lease. Pure rules, no I/O and no clock of their own: the gateway and the in-process
 * plane apply them to their own state. See docs/fail-safe.md.
 */
import { ConflictError, InvalidInputError, LeaseEndedError } from '../common/errors';

export type LeaseState = 'active' | 'released' | 'expired' | 'revoked';

export interface Lease {
  /** Who holds it: the promotion's workflow id and first run id (`promotion-m/<run>`). */
  holder: string;
  /** The version traffic returns to when the lease ends without a release. */
  champion: string;
  candidate: string;
  /** How long a renewal keeps the lease, ms. */
  ttlMs: number;
  acquiredAtMs: number;
  renewedAtMs: number;
  expiresAtMs: number;
  state: LeaseState;
  /** When it stopped being active (null while active). */
  endedAtMs: number | null;
  /** Why it ended (null while active). */
  reason: string | null;
}

export interface LeaseRequest {
  holder: string;
  champion: string;
  candidate: string;
  ttlMs: number;
}

/** A route as far as the lease rules care: versions with weight, and the mirrored version. */
export interface RouteShape {
  weights: Readonly<Record<string, number>>;
  shadow: { version: string } | null;
}

/** Bounds of a lease's time to live, ms: 2 seconds (tests) to 7 days. */
export const MIN_LEASE_TTL_MS = 2_000;
export const MAX_LEASE_TTL_MS = 7 * 24 * 3600_000;

const HOLDER = /^[A-Za-z0-9][A-Za-z0-9._:/@-]{0,199}$/;
const VERSION = /^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$/;

const iso = (ms: number) => new Date(ms).toISOString();

/** Validates a lease request body; errors name the field. */
export function checkLeaseRequest(input: unknown): LeaseRequest {
  const o =
    input && typeof input === 'object' && !Array.isArray(input) ? (input as Record<string, unknown>) : null;
  if (!o) throw new InvalidInputError('lease: expected an object {holder, champion, candidate, ttlMs}');
  const text = (field: string, pattern: RegExp, what: string): string => {
    const v = Object.hasOwn(o, field) ? o[field] : undefined;
    if (typeof v !== 'string' || !pattern.test(v))
      throw new InvalidInputError(`lease.${field}: expected ${what}`);
    return v;
  };
  const holder = text('holder', HOLDER, 'a holder id (letters, digits and . _ : / @ -, at most 200)');
  const champion = text('champion', VERSION, 'a version (letters, digits and . _ -, at most 100)');
  const candidate = text('candidate', VERSION, 'a version (letters, digits and . _ -, at most 100)');
  if (champion === candidate) throw new InvalidInputError('lease.candidate: must differ from the champion');
  const ttlMs = Object.hasOwn(o, 'ttlMs') ? o.ttlMs : undefined;
  if (
    typeof ttlMs !== 'number' ||
    !Number.isInteger(ttlMs) ||
    ttlMs < MIN_LEASE_TTL_MS ||
    ttlMs > MAX_LEASE_TTL_MS
  )
    throw new InvalidInputError(
      `lease.ttlMs: expected whole milliseconds ${MIN_LEASE_TTL_MS}..${MAX_LEASE_TTL_MS}`,
    );
  return { holder, champion, candidate, ttlMs };
}

function endedMessage(lease: Lease): string {
  return `the lease of ${lease.holder} ${lease.state} at ${iso(lease.endedAtMs ?? lease.expiresAtMs)} (${lease.reason ?? 'no reason'}); traffic went back to ${lease.champion}`;
}

/**
 * Acquires or renews a lease. The same holder renews its active lease; a lease that ended can never
 * be renewed by its holder (LeaseEndedError); another holder's active lease is a ConflictError.
 */
export function acquireLease(current: Lease | undefined, req: LeaseRequest, nowMs: number): Lease {
  if (current?.state === 'active') {
    if (current.holder !== req.holder)
      throw new ConflictError(
        `the traffic of this model is leased by ${current.holder} until ${iso(current.expiresAtMs)}`,
      );
    if (current.champion !== req.champion || current.candidate !== req.candidate)
      throw new ConflictError(
        `the lease of ${req.holder} is for champion ${current.champion} and candidate ${current.candidate}; a renewal cannot change them`,
      );
    return { ...current, ttlMs: req.ttlMs, renewedAtMs: nowMs, expiresAtMs: nowMs + req.ttlMs };
  }
  // A lease its holder released may be taken again (e.g. shadow ended, canary starts); one that
  // expired or was revoked never: the promotion behind it must roll back.
  if (current && current.holder === req.holder && current.state !== 'released')
    throw new LeaseEndedError(endedMessage(current));
  return {
    ...req,
    acquiredAtMs: nowMs,
    renewedAtMs: nowMs,
    expiresAtMs: nowMs + req.ttlMs,
    state: 'active',
    endedAtMs: null,
    reason: null,
  };
}

/** The lease after time passes: an active lease past its expiry is expired. Unchanged otherwise. */
export function expireLease(lease: Lease, nowMs: number): Lease {
  if (lease.state !== 'active' || nowMs < lease.expiresAtMs) return lease;
  return {
    ...lease,
    state: 'expired',
    endedAtMs: nowMs,
    reason: `not renewed within ${Math.round(lease.ttlMs / 1000)}s (last renewal ${iso(lease.renewedAtMs)})`,
  };
}

/**
 * After the data plane itself was down it cannot tell a dead promotion from one that could not
 * reach it: an active lease gets a fresh time to live from the restart.
 */
export function leaseAfterRestart(lease: Lease, nowMs: number): Lease {
  if (lease.state !== 'active') return lease;
  return { ...lease, expiresAtMs: Math.max(lease.expiresAtMs, nowMs + lease.ttlMs) };
}

/** The route the data plane falls back to when a lease expires: all traffic on the champion. */
export function fallbackWeights(lease: Lease): Record<string, number> {
  return { [lease.champion]: 100 };
}

/** Ends the holder's lease (the promotion is done with traffic). Idempotent; others' leases untouched. */
export function releaseLease(lease: Lease | undefined, holder: string, nowMs: number): Lease | undefined {
  if (!lease || lease.holder !== holder || lease.state !== 'active') return lease;
  return { ...lease, state: 'released', endedAtMs: nowMs, reason: 'released by its holder' };
}

function single(route: RouteShape): string | null {
  const live = Object.entries(route.weights).filter(([, w]) => w > 0);
  return route.shadow === null && live.length === 1 ? live[0]![0] : null;
}

/**
 * Whether a route may be applied under the model's lease, and the lease afterwards.
 * - A route that splits traffic or mirrors needs the active lease of the claimed holder, and may
 *   only use the lease's champion and candidate.
 * - The holder sending everything back to the champion ends its lease (released); everything on the
 *   candidate keeps it. Anyone else may only send everything to the lease's champion, which
 *   revokes the lease (an operator's rollback).
 * - Under a lease that expired or was revoked, its holder can never route to the candidate again.
 * Throws ConflictError or LeaseEndedError with the reason.
 */
export function checkRoute(
  lease: Lease | undefined,
  route: RouteShape,
  claim: string | undefined,
  nowMs: number,
): Lease | undefined {
  const only = single(route);
  if (lease?.state === 'active') {
    if (claim === lease.holder) {
      const allowed = new Set([lease.champion, lease.candidate]);
      const used = [
        ...Object.keys(route.weights).filter((v) => (route.weights[v] ?? 0) > 0),
        ...(route.shadow ? [route.shadow.version] : []),
      ];
      const stranger = used.find((v) => !allowed.has(v));
      if (stranger !== undefined)
        throw new ConflictError(
          `the lease of ${lease.holder} covers versions ${lease.champion} and ${lease.candidate}, not ${stranger}`,
        );
      // Everything back on the champion ends the lease (a rollback, or the end of shadow mode).
      // All traffic on the candidate keeps it: the candidate is still being watched until the
      // promotion releases the lease at its point of no return.
      if (only !== lease.champion) return lease;
      return {
        ...lease,
        state: 'released',
        endedAtMs: nowMs,
        reason: `its holder sent all traffic back to ${only}`,
      };
    }
    if (only === lease.champion)
      return {
        ...lease,
        state: 'revoked',
        endedAtMs: nowMs,
        reason: `all traffic sent back to ${only} by someone other than the holder`,
      };
    throw new ConflictError(
      `the traffic of this model is leased by ${lease.holder} (a promotion in progress); abort it, or send all traffic to the champion ${lease.champion}`,
    );
  }
  if (only === null) {
    if (lease && claim === lease.holder && lease.state !== 'released')
      throw new LeaseEndedError(endedMessage(lease));
    throw new ConflictError(
      'a route that splits traffic or mirrors it needs an active lease: PUT /admin/leases/<model> first, and name its holder in the route',
    );
  }
  if (lease && claim === lease.holder && only !== lease.champion && lease.state !== 'released')
    throw new LeaseEndedError(
      `${endedMessage(lease)}; its holder cannot send traffic to ${only} under it again`,
    );
  return lease;
}
