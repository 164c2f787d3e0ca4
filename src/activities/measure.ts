/**
 * Measuring activities: offline gates, shadow comparison, guardrails and delayed labels. They
 * return measurements only; verdicts come from the pure assessments in src/analysis.
 */
import { compareScores, type ShadowComparison } from '../analysis/shadow';
import type { Measurement } from '../analysis/types';
import type { Gate, Guardrail, PolicyThresholds } from '../plan/schema';
import { guard, measuredOrError, type ActivityContext, type Target } from './context';

/** A measurement of both versions in play. */
export interface PairedMeasurement {
  metric: string;
  candidate: Measurement;
  champion: Measurement;
}

const failed =
  (metric: string, version: string) =>
  (error: string): Measurement => ({ metric, version, value: null, samples: 0, phase: 'Error', error });

export function measureActivities(ctx: ActivityContext) {
  return {
    async measureGate(input: Target & { gate: Gate }): Promise<PairedMeasurement> {
      const { validator } = ctx.providers(input.refs);
      const metric = input.gate.metric ?? input.gate.check ?? 'gate';
      const measure = (version: string) =>
        measuredOrError(
          () => validator.measureGate(input.model, version, input.gate),
          failed(metric, version),
        );
      // A check gate is about the candidate alone; metric gates also measure the champion for comparison.
      const candidate = await measure(input.candidate);
      const champion = input.gate.check
        ? { ...candidate, version: input.champion, value: null, samples: 0 }
        : await measure(input.champion);
      return { metric, candidate, champion };
    },

    async measureShadow(
      input: Target & { fromMs: number; toMs: number; policy: PolicyThresholds | null },
    ): Promise<ShadowComparison> {
      return guard(async () => {
        const pairs = await ctx.providers(input.refs).metrics.shadowPairs({
          model: input.model,
          champion: input.champion,
          candidate: input.candidate,
          fromMs: input.fromMs,
          toMs: input.toMs,
        });
        return compareScores(pairs, input.policy ? [input.policy.review, input.policy.block] : [0.5]);
      });
    },

    async measureGuardrails(
      input: Target & { guardrails: Guardrail[]; fromMs: number; toMs: number },
    ): Promise<PairedMeasurement[]> {
      const { metrics } = ctx.providers(input.refs);
      const measure = (metric: string, version: string) =>
        measuredOrError(
          () =>
            metrics.measure({ model: input.model, version, metric, fromMs: input.fromMs, toMs: input.toMs }),
          failed(metric, version),
        );
      const out: PairedMeasurement[] = [];
      for (const rule of input.guardrails) {
        out.push({
          metric: rule.metric,
          candidate: await measure(rule.metric, input.candidate),
          champion: await measure(rule.metric, input.champion),
        });
      }
      return out;
    },

    async measureLabels(
      input: Target & { metric: string; fromMs: number; toMs: number },
    ): Promise<PairedMeasurement> {
      const { metrics } = ctx.providers(input.refs);
      const measure = (version: string) =>
        measuredOrError(
          () =>
            metrics.labelMetric({
              model: input.model,
              version,
              metric: input.metric,
              fromMs: input.fromMs,
              toMs: input.toMs,
            }),
          failed(input.metric, version),
        );
      return {
        metric: input.metric,
        candidate: await measure(input.candidate),
        champion: await measure(input.champion),
      };
    },
  };
}
