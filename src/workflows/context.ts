/** What the workflow's stage functions share. */
import type { proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';
import type { PromotionRun } from './run';
import type { PromotionInput } from './types';

export interface Ctx {
  run: PromotionRun;
  input: PromotionInput;
  acts: ReturnType<typeof proxyActivities<Activities>>;
  target: () => {
    promotionId: string;
    model: string;
    candidate: string;
    champion: string;
    refs: ReturnType<typeof refsOf>;
  };
  sync: () => void;
  /** This run's in-memory flags (not carried across continue-as-new). */
  live: { renewing: boolean };
}

export function refsOf(input: PromotionInput) {
  const p = input.plan;
  return {
    registry: p.registry.type,
    serving: p.serving.type,
    metrics: p.metrics.type,
    notify: p.notify.type,
  };
}
