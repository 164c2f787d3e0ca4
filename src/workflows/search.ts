/** Typed search attributes of promotions, so operators can find and filter them in the Temporal UI. */
import { defineSearchAttributeKey, SearchAttributeType } from '@temporalio/common';

export const MODEL = defineSearchAttributeKey('PromotionModel', SearchAttributeType.KEYWORD);
export const CANDIDATE = defineSearchAttributeKey('PromotionCandidate', SearchAttributeType.KEYWORD);
export const PHASE = defineSearchAttributeKey('PromotionPhase', SearchAttributeType.KEYWORD);
export const OUTCOME = defineSearchAttributeKey('PromotionOutcome', SearchAttributeType.KEYWORD);
export const TRAFFIC = defineSearchAttributeKey('PromotionTrafficPercent', SearchAttributeType.INT);

/** Name and type of every promotion search attribute (for registration on a server). */
export const SEARCH_ATTRIBUTES = [MODEL, CANDIDATE, PHASE, OUTCOME, TRAFFIC].map((k) => ({
  name: k.name,
  type: k.type,
}));

/** The task queue promotions run on unless PROMOTE_TASK_QUEUE says otherwise. */
export const DEFAULT_TASK_QUEUE = 'promote';

/** One running promotion per model: the workflow id is derived from the model name. */
export function promotionId(model: string): string {
  return `promotion-${model}`;
}
