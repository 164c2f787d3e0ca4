/** Traffic activities: weights and shadow mirroring, each returning what the router applied. */
import type { ProviderRefs, Route } from '../providers/types';
import { guard, log, type ActivityContext, type Target } from './context';

export function trafficActivities(ctx: ActivityContext) {
  return {
    /** Sets the candidate's share of traffic (the champion gets the rest) and reads back the route. */
    async setTraffic(input: Target & { percent: number; stickyKey: string }): Promise<Route> {
      return guard(async () => {
        const { traffic } = ctx.providers(input.refs);
        const weights = { [input.champion]: 100 - input.percent, [input.candidate]: input.percent };
        await traffic.setWeights(input.model, weights, input.stickyKey);
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

    /** Routes all traffic to one version (rollback, and the end of the watch). */
    async routeAllTo(input: {
      model: string;
      version: string;
      stickyKey: string;
      refs: ProviderRefs;
    }): Promise<Route> {
      return guard(async () => {
        const { traffic } = ctx.providers(input.refs);
        const route = await traffic.getRoute(input.model);
        if (route?.shadow) await traffic.setShadow(input.model, null);
        const applied = await traffic.setWeights(
          input.model,
          { [input.version]: 100 },
          route?.stickyKey ?? input.stickyKey,
        );
        log({ model: input.model, candidate: input.version }, 'all traffic routed', {
          weights: applied.weights,
        });
        return applied;
      });
    },

    async setShadow(input: Target & { sampleRate: number | null }): Promise<Route> {
      return guard(async () => {
        const shadow =
          input.sampleRate === null ? null : { version: input.candidate, sampleRate: input.sampleRate };
        const applied = await ctx.providers(input.refs).traffic.setShadow(input.model, shadow);
        log(input, shadow ? 'shadow on' : 'shadow off', { shadow: applied.shadow });
        return applied;
      });
    },
  };
}
