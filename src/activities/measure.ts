/**
 * Measuring activities: offline gates, shadow comparison, guardrails and delayed labels. They
 * return measurements only; verdicts come from the pure assessments in src/analysis.
 */
import { addToSparse, type LiveCounts } from '../analysis/guardrail';
import { compareLabels, summarizeLabels, type LabelComparison } from '../analysis/labels';
import type { ShadowComparison } from '../analysis/shadow';
import { compareScores } from '../analysis/shadow-compare';
import type { Measurement } from '../analysis/types';
import type { Gate, PolicyThresholds } from '../plan/schema';
import { checkCounts, checkLabelled } from '../providers/checks';
import type { Split } from '../workflows/types';
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
      input: Target & { fromMs: number; toMs: number; policy: PolicyThresholds | null; alpha?: number },
    ): Promise<ShadowComparison> {
      return guard(async () => {
        const pairs = await ctx.providers(input.refs).metrics.shadowPairs({
          model: input.model,
          champion: input.champion,
          candidate: input.candidate,
          fromMs: input.fromMs,
          toMs: input.toMs,
        });
        return compareScores(
          pairs,
          input.policy ? [input.policy.review, input.policy.block] : [0.5],
          input.alpha ?? 0.05,
        );
      });
    },

    /**
     * Counts of both versions in every traffic split (the live checks' whole input): per split the
     * requests, errors and assignment units, and each version's latency histogram over all splits.
     * Any window that cannot be read makes the whole measurement an Error.
     */
    async measureLive(input: Target & { splits: Split[]; toMs: number }): Promise<LiveCounts> {
      const empty = (): LiveCounts => ({
        phase: 'Ok',
        splits: [],
        latency: { candidate: { bins: [], maxMs: null }, champion: { bins: [], maxMs: null } },
      });
      try {
        const { metrics } = ctx.providers(input.refs);
        const live = empty();
        for (const split of input.splits) {
          const window = { model: input.model, fromMs: split.fromMs, toMs: split.toMs ?? input.toMs };
          const candidate = checkCounts(await metrics.counts({ ...window, version: input.candidate }));
          const champion = checkCounts(await metrics.counts({ ...window, version: input.champion }));
          live.splits.push({
            percent: split.percent,
            candidate: { requests: candidate.requests, errors: candidate.errors, units: candidate.units },
            champion: { requests: champion.requests, errors: champion.errors, units: champion.units },
          });
          addToSparse(live.latency.candidate, candidate.latency.counts, candidate.latency.maxMs);
          addToSparse(live.latency.champion, champion.latency.counts, champion.latency.maxMs);
        }
        return live;
      } catch (err) {
        return { ...empty(), phase: 'Error', error: err instanceof Error ? err.message : String(err) };
      }
    },

    /** Both versions' quality on matured labelled predictions of the window. */
    async measureLabels(
      input: Target & { fromMs: number; toMs: number; maturity: number },
    ): Promise<LabelComparison> {
      try {
        const { metrics } = ctx.providers(input.refs);
        const rows = (version: string) =>
          metrics.labelled({ model: input.model, version, fromMs: input.fromMs, toMs: input.toMs });
        return compareLabels(
          { version: input.candidate, rows: checkLabelled(await rows(input.candidate)) },
          { version: input.champion, rows: checkLabelled(await rows(input.champion)) },
          input.toMs,
          input.maturity,
        );
      } catch (err) {
        const none = (version: string) => summarizeLabels(version, []);
        return {
          phase: 'Error',
          error: err instanceof Error ? err.message : String(err),
          maturedBeforeMs: null,
          delayMs: null,
          candidate: none(input.candidate),
          champion: none(input.champion),
        };
      }
    },
  };
}
