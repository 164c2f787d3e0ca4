/** Registry activities: resolve the versions in play, read and move aliases, tag versions. */
import { ConflictError, NotFoundError } from '../common/errors';
import type { ProviderRefs } from '../providers/types';
import { guard, log, type ActivityContext } from './context';

export function registryActivities(ctx: ActivityContext) {
  return {
    /** Checks the candidate exists and finds the champion by alias. */
    async resolveVersions(input: {
      model: string;
      candidate: string;
      championAlias: string;
      refs: ProviderRefs;
    }): Promise<{ champion: string }> {
      return guard(async () => {
        const { registry } = ctx.providers(input.refs);
        await registry.getVersion(input.model, input.candidate);
        const champion = await registry.getAlias(input.model, input.championAlias);
        if (!champion) {
          throw new NotFoundError(
            `model ${input.model} has no version with alias ${input.championAlias}: there is no champion to promote against`,
          );
        }
        if (champion === input.candidate) {
          throw new ConflictError(
            `${input.model} version ${input.candidate} is already the ${input.championAlias}`,
          );
        }
        log(input, 'versions resolved', { champion });
        return { champion };
      });
    },

    async getAlias(input: { model: string; alias: string; refs: ProviderRefs }): Promise<string | null> {
      return guard(() => ctx.providers(input.refs).registry.getAlias(input.model, input.alias));
    },

    /** Points an alias at a version (or deletes it for null). Idempotent. */
    async setAlias(input: {
      model: string;
      alias: string;
      version: string | null;
      refs: ProviderRefs;
    }): Promise<void> {
      return guard(async () => {
        await ctx.providers(input.refs).registry.setAlias(input.model, input.alias, input.version);
        log({ model: input.model, candidate: input.version ?? undefined }, 'alias set', {
          alias: input.alias,
        });
      });
    },

    async tagVersion(input: {
      model: string;
      version: string;
      tags: Record<string, string>;
      refs: ProviderRefs;
    }): Promise<void> {
      return guard(() => ctx.providers(input.refs).registry.setTags(input.model, input.version, input.tags));
    },
  };
}
