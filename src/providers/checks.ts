/**
 * Checks of what metrics sources answer: a provider response is input like any other. A count that
 * is not a whole number, a histogram over other buckets, or a label that is not 0 or 1 is refused
 * with the reason (the measurement becomes an Error), never used.
 */
import { z } from 'zod';
import type { LabelledPrediction } from '../analysis/labels';
import { LATENCY_EDGES_MS } from '../analysis/sequential/quantile';
import type { WindowCounts } from '../analysis/types';
import { InvalidInputError } from '../common/errors';
import { MAX_SLICE_VALUES } from '../serving/gateway/prediction-log/types';
import { MAX_LABELLED_ROWS, type SliceValue } from './types';

const count = z.number().int().min(0).max(Number.MAX_SAFE_INTEGER);
const time = z.number().finite();

const countsSchema = z.object({
  requests: count,
  errors: count,
  units: count,
  latency: z.object({
    boundsMs: z.array(z.number()).length(LATENCY_EDGES_MS.length),
    counts: z.array(count).length(LATENCY_EDGES_MS.length + 1),
    maxMs: z.number().finite().min(0).nullable(),
  }),
});

const rowSchema = z.object({
  score: z.number().min(0).max(1),
  label: z.union([z.literal(0), z.literal(1)]),
  atMs: time,
  labelAtMs: time,
});

function problem(what: string, error: z.ZodError): InvalidInputError {
  const issue = error.issues[0]!;
  return new InvalidInputError(`${what}: ${issue.path.join('.') || '(root)'}: ${issue.message}`);
}

/** The counts of a window, checked: whole numbers, errors <= requests, buckets as LATENCY_EDGES_MS. */
export function checkCounts(raw: unknown): WindowCounts {
  const parsed = countsSchema.safeParse(raw);
  if (!parsed.success) throw problem('metrics source counts', parsed.error);
  const c = parsed.data;
  if (c.errors > c.requests)
    throw new InvalidInputError(`metrics source counts: ${c.errors} errors among ${c.requests} requests`);
  if (c.units > c.requests)
    throw new InvalidInputError(`metrics source counts: ${c.units} units among ${c.requests} requests`);
  const bucketed = c.latency.counts.reduce((a, b) => a + b, 0);
  if (bucketed !== c.requests)
    throw new InvalidInputError(
      `metrics source counts: the latency histogram holds ${bucketed} requests, not ${c.requests}`,
    );
  if (c.latency.boundsMs.some((b, i) => Math.abs(b - LATENCY_EDGES_MS[i]!) > 1e-9 * LATENCY_EDGES_MS[i]!))
    throw new InvalidInputError('metrics source counts: latency buckets differ from LATENCY_EDGES_MS');
  return c;
}

/** Labelled predictions, checked: at most MAX_LABELLED_ROWS, scores 0..1, labels 0 or 1. */
export function checkLabelled(raw: unknown): LabelledPrediction[] {
  if (!Array.isArray(raw)) throw new InvalidInputError('metrics source labelled rows: expected an array');
  if (raw.length > MAX_LABELLED_ROWS)
    throw new InvalidInputError(
      `metrics source labelled rows: ${raw.length} rows, at most ${MAX_LABELLED_ROWS}`,
    );
  return raw.map((row, i) => {
    const parsed = rowSchema.safeParse(row);
    if (!parsed.success) throw problem(`metrics source labelled rows[${i}]`, parsed.error);
    return parsed.data;
  });
}

const sliceValuesSchema = z
  .array(z.object({ value: z.string().max(10_000), requests: count }))
  .max(MAX_SLICE_VALUES);

/**
 * A slice key's values by traffic, checked: at most MAX_SLICE_VALUES entries of a string and a
 * count, or the answer is refused. Values no slice can be named by (empty, over 100 characters,
 * not well-formed text: what a client's request put there) are left out, not fatal: one odd
 * request must not stop the checks of every other slice.
 */
export function checkSliceValues(raw: unknown): SliceValue[] {
  const parsed = sliceValuesSchema.safeParse(raw);
  if (!parsed.success) throw problem('metrics source slice values', parsed.error);
  return parsed.data.filter((v) => v.value.length >= 1 && v.value.length <= 100 && v.value.isWellFormed());
}
