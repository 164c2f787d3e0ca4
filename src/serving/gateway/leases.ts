/**
 * The gateway's side of the traffic lease (docs/fail-safe.md): it applies the pure rules of
 * src/serving/lease.ts to its state and, every second, expires leases that were not renewed,
 * sending the model's traffic back to the champion on its own.
 */
import type { Logger } from '../../common/logger';
import {
  acquireLease,
  checkLeaseRequest,
  checkRoute,
  expireLease,
  fallbackWeights,
  releaseLease,
  type Lease,
  type RouteShape,
} from '../lease';
import type { GatewayInstruments } from './metrics';
import { DEFAULT_STICKY_KEY, nullRecord, type ModelState, type StateStore } from './state';

export class Leases {
  private timer: NodeJS.Timeout | null = null;

  constructor(
    private readonly store: StateStore,
    private readonly instruments: GatewayInstruments,
    private readonly logger: Logger,
    private readonly now: () => number = Date.now,
  ) {}

  /** Checks for expired leases every `everyMs` (default 1s); the timer never holds the process. */
  start(everyMs = 1000): void {
    this.timer = setInterval(() => this.expireAll(), everyMs);
    this.timer.unref();
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  expireAll(): void {
    for (const [model, m] of this.store.entries()) this.expire(model, m);
  }

  /**
   * Expires the model's lease if its time is up, and then routes all traffic to the champion
   * recorded in it, shadow off. The route changes in memory first: even if saving fails, traffic
   * is already back on the champion.
   */
  expire(model: string, m: ModelState): void {
    const lease = m.lease;
    if (!lease || lease.state !== 'active') return;
    const after = expireLease(lease, this.now());
    if (after === lease) return;
    m.lease = after;
    m.route = {
      weights: nullRecord(Object.entries(fallbackWeights(after))),
      shadow: null,
      stickyKey: m.route?.stickyKey ?? DEFAULT_STICKY_KEY,
      sliceKeys: m.route?.sliceKeys ?? [],
    };
    this.instruments.leaseExpired.inc({ model });
    this.logger.warn(
      {
        model,
        holder: after.holder,
        champion: after.champion,
        candidate: after.candidate,
        reason: after.reason,
      },
      'traffic lease expired: all traffic sent back to the champion',
    );
    try {
      this.store.save();
    } catch (err) {
      this.logger.error({ err, model }, 'could not save the gateway state after a lease expired');
    }
  }

  /** Acquires or renews the lease named in `input` (validated here). */
  acquire(model: string, input: unknown): Lease {
    const request = checkLeaseRequest(input);
    const m = this.store.ensure(model);
    this.expire(model, m);
    const before = m.lease;
    const lease = acquireLease(before ?? undefined, request, this.now());
    m.lease = lease;
    this.store.save();
    if (before?.state !== 'active')
      this.logger.info(
        {
          model,
          holder: lease.holder,
          champion: lease.champion,
          candidate: lease.candidate,
          ttlMs: lease.ttlMs,
        },
        'traffic lease acquired',
      );
    return lease;
  }

  get(model: string): Lease | undefined {
    const m = this.store.get(model);
    if (!m) return undefined;
    this.expire(model, m);
    return m.lease ?? undefined;
  }

  /** Ends the holder's lease; idempotent. */
  release(model: string, holder: string): Lease | undefined {
    const m = this.store.get(model);
    if (!m) return undefined;
    this.expire(model, m);
    const after = releaseLease(m.lease ?? undefined, holder, this.now());
    if (after && after !== m.lease) {
      m.lease = after;
      this.store.save();
      this.logger.info({ model, holder }, 'traffic lease released');
    }
    return after;
  }

  /** The lease once `route` is applied under `claim` (throws ConflictError / LeaseEndedError). Stores nothing. */
  check(model: string, route: RouteShape, claim: string | undefined): Lease | undefined {
    const m = this.store.get(model);
    if (m) this.expire(model, m);
    return checkRoute(m?.lease ?? undefined, route, claim, this.now());
  }
}
