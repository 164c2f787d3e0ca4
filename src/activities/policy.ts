/** Policy and notification activities. */
import type { PolicyThresholds } from '../plan/schema';
import type { PromotionEvent, ProviderRefs } from '../providers/types';
import { guard, log, type ActivityContext } from './context';

export function policyActivities(ctx: ActivityContext) {
  return {
    async getPolicy(input: {
      model: string;
      version: string;
      refs: ProviderRefs;
    }): Promise<PolicyThresholds | null> {
      return guard(() => ctx.providers(input.refs).policy.get(input.model, input.version));
    },

    /** Sets (or, for null, removes) a version's decision thresholds. Idempotent. */
    async setPolicy(input: {
      model: string;
      version: string;
      thresholds: PolicyThresholds | null;
      refs: ProviderRefs;
    }): Promise<void> {
      return guard(async () => {
        await ctx.providers(input.refs).policy.set(input.model, input.version, input.thresholds);
        log({ model: input.model, candidate: input.version }, 'policy set', { thresholds: input.thresholds });
      });
    },

    /** Announces an event once per key (the key carries the workflow id and step). */
    async notify(input: { event: PromotionEvent; refs: ProviderRefs }): Promise<void> {
      return guard(() => ctx.providers(input.refs).notifier.notify(input.event));
    },
  };
}
