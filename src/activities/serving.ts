/** Serving activities: deploy, smoke test and decommission versions. All idempotent. */
import type { ProviderRefs } from '../providers/types';
import { guard, log, type ActivityContext } from './context';

export function servingActivities(ctx: ActivityContext) {
  return {
    /** Deploys the version (a no-op when it is already up) and smoke-tests it. */
    async deployVersion(input: {
      model: string;
      version: string;
      refs: ProviderRefs;
    }): Promise<{ endpoint: string; smokeOk: boolean; smokeDetail: string }> {
      return guard(async () => {
        const { serving } = ctx.providers(input.refs);
        const deployment = await serving.deploy(input.model, input.version);
        const smoke = await serving.smokeTest(input.model, input.version);
        log({ model: input.model, candidate: input.version }, 'deployed', {
          endpoint: deployment.endpoint,
          smoke: smoke.detail,
        });
        return { endpoint: deployment.endpoint, smokeOk: smoke.ok, smokeDetail: smoke.detail };
      });
    },

    /** The versions of the model that have a deployment. */
    async listDeployments(input: { model: string; refs: ProviderRefs }): Promise<string[]> {
      return guard(async () =>
        (await ctx.providers(input.refs).serving.list(input.model)).map((d) => d.version).sort(),
      );
    },

    async decommissionVersion(input: { model: string; version: string; refs: ProviderRefs }): Promise<void> {
      return guard(async () => {
        await ctx.providers(input.refs).serving.decommission(input.model, input.version);
        log({ model: input.model, candidate: input.version }, 'decommissioned');
      });
    },
  };
}
