/**
 * Measuring activities: offline gates, shadow comparison, guardrails and delayed labels. They
 * return measurements only; verdicts come from the pure assessments in src/analysis.
 */
import {
  addToSparse,
  type LiveCounts,
  type SliceCounts,
  type SparseHistogram,
  type SplitCounts,
} from '../analysis/guardrail';
import { compareLabels, summarizeLabels, type LabelComparison } from '../analysis/labels';
import type { ShadowComparison } from '../analysis/shadow';
import { compareScores } from '../analysis/shadow-compare';
import type { Measurement } from '../analysis/types';
import type { Gate, PolicyThresholds } from '../plan/schema';
import { checkCounts, checkLabelled, checkSliceValues } from '../providers/checks';
import type { MetricsSource, SliceFilter } from '../providers/types';
import type { SliceQuery, Split } from '../workflows/types';
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
    async measureLive(
      input: Target & { splits: Split[]; toMs: number; slices?: SliceQuery[] },
    ): Promise<LiveCounts> {
      const empty = (): LiveCounts => ({ phase: 'Ok', splits: [], latency: noLatency() });
      let live: LiveCounts;
      let metrics: MetricsSource;
      try {
        metrics = ctx.providers(input.refs).metrics;
        live = { ...empty(), ...(await splitCounts(metrics, input)) };
      } catch (err) {
        return { ...empty(), phase: 'Error', error: message(err) };
      }
      // Slices after the overall counts, each on its own: a slice that cannot be read is an
      // Error of that slice, never of the overall checks.
      const deadline = Date.now() + SLICE_BUDGET_MS;
      const slices = await resolveSlices(metrics, input, input.splits[0]?.fromMs ?? input.toMs);
      live.slices = await inBatches(slices, async (s): Promise<SliceCounts> => {
        const none = { name: s.name, value: s.value, splits: [], latency: noLatency() };
        if (s.error !== undefined) return { ...none, error: s.error };
        if (Date.now() > deadline) return { ...none, error: OUT_OF_TIME };
        try {
          return {
            name: s.name,
            value: s.value,
            ...(await splitCounts(metrics, input, { key: s.key, value: s.value })),
          };
        } catch (err) {
          return { ...none, error: message(err) };
        }
      });
      return live;
    },

    /** Both versions' quality on matured labelled predictions of the window. */
    async measureLabels(
      input: Target & { fromMs: number; toMs: number; maturity: number; slices?: SliceQuery[] },
    ): Promise<LabelComparison> {
      try {
        const { metrics } = ctx.providers(input.refs);
        const compare = async (slice?: SliceFilter) => {
          const rows = async (version: string) =>
            checkLabelled(
              await metrics.labelled({
                model: input.model,
                version,
                fromMs: input.fromMs,
                toMs: input.toMs,
                ...(slice ? { slice } : {}),
              }),
            );
          return compareLabels(
            { version: input.candidate, rows: await rows(input.candidate) },
            { version: input.champion, rows: await rows(input.champion) },
            input.toMs,
            input.maturity,
          );
        };
        const overall = await compare();
        const deadline = Date.now() + SLICE_BUDGET_MS;
        const slices = (input.slices ?? []).flatMap((s) => s.values.map((value) => ({ ...s, value })));
        overall.slices = await inBatches(slices, async (s) => {
          const failed = (error: string) => ({
            name: s.name,
            value: s.value,
            comparison: noLabels(input, error),
          });
          if (Date.now() > deadline) return failed(OUT_OF_TIME);
          try {
            return {
              name: s.name,
              value: s.value,
              comparison: await compare({ key: s.key, value: s.value }),
            };
          } catch (err) {
            return failed(message(err));
          }
        });
        return overall;
      } catch (err) {
        return noLabels(input, message(err));
      }
    },
  };
}

const noLatency = (): { candidate: SparseHistogram; champion: SparseHistogram } => ({
  candidate: { bins: [], maxMs: null },
  champion: { bins: [], maxMs: null },
});

/** Both versions' counts in every split (of one slice, when given), checked. */
async function splitCounts(
  metrics: MetricsSource,
  input: Target & { splits: Split[]; toMs: number },
  slice?: SliceFilter,
): Promise<Pick<SliceCounts, 'splits' | 'latency'>> {
  const splits: SplitCounts[] = [];
  const latency = noLatency();
  for (const split of input.splits) {
    const window = {
      model: input.model,
      fromMs: split.fromMs,
      toMs: split.toMs ?? input.toMs,
      ...(slice ? { slice } : {}),
    };
    const candidate = checkCounts(await metrics.counts({ ...window, version: input.candidate }));
    const champion = checkCounts(await metrics.counts({ ...window, version: input.champion }));
    splits.push({
      percent: split.percent,
      candidate: { requests: candidate.requests, errors: candidate.errors, units: candidate.units },
      champion: { requests: champion.requests, errors: champion.errors, units: champion.units },
    });
    addToSparse(latency.candidate, candidate.latency.counts, candidate.latency.maxMs);
    addToSparse(latency.champion, champion.latency.counts, champion.latency.maxMs);
  }
  return { splits, latency };
}

/** One slice value to read; `error` when its dimension's values could not be listed. */
interface SliceToRead {
  name: string;
  key: string;
  value: string;
  error?: string;
}

/**
 * The slices to measure: the listed values, and top-N slices filled up from the traffic since
 * `fromMs` (values already chosen stay; new ones are added by traffic, most first, up to N). When
 * a top-N dimension's values cannot be read and none is chosen yet, it is one slice `*` with the
 * error, so that it is not silently unwatched.
 */
async function resolveSlices(
  metrics: MetricsSource,
  input: Target & { toMs: number; slices?: SliceQuery[] },
  fromMs: number,
): Promise<SliceToRead[]> {
  const out: SliceToRead[] = [];
  for (const s of input.slices ?? []) {
    const values = [...s.values];
    if (s.top !== null && values.length < s.top) {
      try {
        const seen = checkSliceValues(
          await metrics.sliceValues({
            model: input.model,
            key: s.key,
            fromMs,
            toMs: input.toMs,
            limit: s.top,
          }),
        );
        for (const v of seen) if (values.length < s.top && !values.includes(v.value)) values.push(v.value);
      } catch (err) {
        if (values.length === 0) out.push({ name: s.name, key: s.key, value: '*', error: message(err) });
      }
    }
    for (const value of values) out.push({ name: s.name, key: s.key, value });
  }
  return out;
}

/** Slice reads in one look take at most this long; the rest are Errors of their slices. */
const SLICE_BUDGET_MS = 20_000;
const OUT_OF_TIME = 'not measured: the look ran out of time for its slices';
/** Slice reads in flight at once. */
const SLICE_CONCURRENCY = 4;

const message = (err: unknown) => (err instanceof Error ? err.message : String(err));

/** `fn` over `items`, at most SLICE_CONCURRENCY at a time, results in order. */
async function inBatches<T, R>(items: readonly T[], fn: (item: T) => Promise<R>): Promise<R[]> {
  const out: R[] = [];
  for (let i = 0; i < items.length; i += SLICE_CONCURRENCY)
    out.push(...(await Promise.all(items.slice(i, i + SLICE_CONCURRENCY).map(fn))));
  return out;
}

/** A label comparison that could not be made. */
function noLabels(input: Target, error: string): LabelComparison {
  const none = (version: string) => summarizeLabels(version, []);
  return {
    phase: 'Error',
    error,
    maturedBeforeMs: null,
    delayMs: null,
    candidate: none(input.candidate),
    champion: none(input.champion),
  };
}
