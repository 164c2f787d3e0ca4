/** Traffic activities: weights and shadow mirroring, each returning what the router applied. */
import type { Lease, ProviderRefs, Route } from '../providers/types';
import { guard, log, type ActivityContext, type Target } from './context';

export function trafficActivities(ctx: ActivityContext) {
  return {
    /** Takes or renews the promotion's traffic lease (idempotent per holder). */
    async acquireLease(input: Target & { holder: string; ttlMs: number }): Promise<Lease> {
      return guard(() =>
        ctx.providers(input.refs).traffic.acquireLease(input.model, {
          holder: input.holder,
          champion: input.champion,
          candidate: input.candidate,
          ttlMs: input.ttlMs,
        }),
      );
    },

    /** Releases the holder's lease; answers the lease as it is afterwards (null: none). */
    async releaseLease(input: Target & { holder: string }): Promise<Lease | null> {
      return guard(async () => {
        const lease = await ctx.providers(input.refs).traffic.releaseLease(input.model, input.holder);
        log(input, 'lease released', { state: lease?.state ?? null });
        return lease;
      });
    },

    /**
     * Sets the candidate's share of traffic (the champion gets the rest) and reads back the route.
     * `sliceKeys`: the request keys the router records with every prediction (the plan's slices).
     */
    async setTraffic(
      input: Target & { percent: number; stickyKey: string; lease?: string; sliceKeys?: string[] },
    ): Promise<Route> {
      return guard(async () => {
        const { traffic } = ctx.providers(input.refs);
        const weights = { [input.champion]: 100 - input.percent, [input.candidate]: input.percent };
        await traffic.setWeights(input.model, weights, input.stickyKey, input.lease, input.sliceKeys);
        const applied = await traffic.getRoute(input.model);
        if (!applied || (applied.weights[input.candidate] ?? 0) !== input.percent) {
          throw new Error(
            `router did not apply ${input.percent}% to ${input.candidate}: it reports ${JSON.stringify(applied?.weights)}`,
          );
        }
        log(input, 'traffic set', { percent: input.percent, weights: applied.weights });
        return applied;
      });
    },

    /** The model's route as the router has it (null: none), with its lease. */
    async readRoute(input: {
      model: string;
      refs: ProviderRefs;
    }): Promise<{ route: Route | null; lease: Lease | null }> {
      return guard(async () => {
        const { traffic } = ctx.providers(input.refs);
        return { route: await traffic.getRoute(input.model), lease: await traffic.getLease(input.model) };
      });
    },

    /** Routes all traffic to one version (rollback, and the end of the watch). */
    async routeAllTo(input: {
      model: string;
      version: string;
      stickyKey: string;
      refs: ProviderRefs;
      lease?: string;
    }): Promise<Route> {
      return guard(async () => {
        const { traffic } = ctx.providers(input.refs);
        const route = await traffic.getRoute(input.model);
        // Weights first, then the shadow: a mirror-only route is turned off by the weights call.
        let applied = await traffic.setWeights(
          input.model,
          { [input.version]: 100 },
          route?.stickyKey ?? input.stickyKey,
          input.lease,
          // One version, no comparison: slice values are no longer recorded.
          [],
        );
        if (applied.shadow) applied = await traffic.setShadow(input.model, null, input.lease);
        log({ model: input.model, candidate: input.version }, 'all traffic routed', {
          weights: applied.weights,
        });
        return applied;
      });
    },

    async setShadow(input: Target & { sampleRate: number | null; lease?: string }): Promise<Route> {
      return guard(async () => {
        const shadow =
          input.sampleRate === null ? null : { version: input.candidate, sampleRate: input.sampleRate };
        const applied = await ctx.providers(input.refs).traffic.setShadow(input.model, shadow, input.lease);
        log(input, shadow ? 'shadow on' : 'shadow off', { shadow: applied.shadow });
        return applied;
      });
    },
  };
}
