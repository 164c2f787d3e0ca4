/**
 * The prediction log's contract: every primary and shadow prediction the gateway served, joinable
 * to labels that arrive later, read back as aggregates (never as whole windows of rows).
 */
import type { WindowCounts } from '../../../analysis/types';
import { LATENCY_EDGES_MS } from '../../../analysis/sequential/quantile';
import { InvalidInputError } from '../../../common/errors';

export interface Prediction {
  /** Made by the gateway (a UUID), returned to the client in `x-request-id`. */
  requestId: string;
  /** The client's own `x-request-id`, if it sent one (at most 200 characters). */
  clientRequestId: string | null;
  entityKey: string | null;
  model: string;
  version: string;
  role: 'primary' | 'shadow';
  score: number | null;
  decision: string | null;
  latencyMs: number;
  status: number;
  atMs: number;
  /** The request's values of the route's slice keys ({'field:country': 'DE'}), or null. */
  slices?: Record<string, string> | null;
}

/** The requests of one slice: those whose value for `key` is `value`. */
export interface SliceFilter {
  key: string;
  value: string;
}

/** A slice key's value with its primary requests in a window. */
export interface SliceValue {
  value: string;
  requests: number;
}

/** Slice values a read answers at most. */
export const MAX_SLICE_VALUES = 100;

export interface LabelInput {
  requestId?: string;
  entityKey?: string;
  label: number;
}

export interface LabelledRow {
  version: string;
  score: number;
  label: number;
  /** When the prediction was made and when its label arrived, epoch ms. */
  atMs: number;
  labelAtMs: number;
}

export interface ScorePairRow {
  champion: number;
  candidate: number;
}

/**
 * Upper bounds (ms, inclusive) of the latency buckets, 5% apart (the resolution of the always-valid
 * quantile bounds, see src/analysis/sequential/quantile.ts); a last, open bucket holds the rest.
 */
export const LATENCY_BOUNDS_MS: readonly number[] = LATENCY_EDGES_MS;

/** The bucket index of a latency, stored with each row so reads aggregate instead of sorting. */
export function latencyBucket(ms: number): number {
  let lo = 0;
  let hi = LATENCY_BOUNDS_MS.length;
  while (lo < hi) {
    const mid = (lo + hi) >> 1;
    if (ms <= LATENCY_BOUNDS_MS[mid]!) hi = mid;
    else lo = mid + 1;
  }
  return lo;
}

/** Raw counts of a window: what a sequential test needs, and what every live metric comes from. */
export type { WindowCounts };

export interface PredictionLogStats {
  /** Rows waiting to be written. */
  buffered: number;
  /** Rows given up on because the buffer was full, since start. */
  dropped: number;
  /** Rows written, since start. */
  written: number;
  /** Rows deleted by retention, since start. */
  pruned: number;
}

export interface PredictionLogOptions {
  /** How long rows are kept, ms. Default 30 days. */
  retentionMs?: number;
  /** How often old rows are pruned, ms (0 = never on its own). Default 60000. */
  pruneEveryMs?: number;
  /** Rows deleted per pruning statement, so no statement holds the writer for long. Default 1000. */
  pruneBatch?: number;
  /** Rows buffered at most (waiting or being written); beyond it rows are dropped and counted. Default 50000. */
  maxBuffered?: number;
  /** How often buffered rows are written, ms. Default 50. */
  flushEveryMs?: number;
  /** Told about failed writes and pruning (errors are retried, never thrown at the caller). */
  onError?: (err: unknown, what: string) => void;
}

export const DEFAULT_RETENTION_MS = 30 * 86_400_000;
/** Rows answered by a pairs/labelled/window read at most, whatever the caller asks. */
export const MAX_READ_ROWS = 50_000;

/**
 * Storage of the prediction log. Writes are buffered and idempotent on (requestId, role); reads
 * see every row recorded before they started.
 */
export interface PredictionLog {
  /** Queues rows for writing; never blocks and never throws. Rows over the buffer are dropped and counted. */
  record(rows: Prediction[]): void;
  /** Resolves when every row recorded so far is written (rejects if the store cannot be written). */
  flush(): Promise<void>;
  /** Joins labels to predictions; refuses the whole batch (nothing written) if any item is bad. */
  ingestLabels(model: string, labels: unknown): Promise<{ labelled: number }>;
  /** Request, error and latency-bucket counts of a window (of one slice), aggregated by the database. */
  counts(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    role?: 'primary' | 'shadow',
    slice?: SliceFilter,
  ): Promise<WindowCounts>;
  /** The values of a slice key with the most primary requests of the window, most first, at most `limit`. */
  sliceValues(model: string, key: string, fromMs: number, toMs: number, limit: number): Promise<SliceValue[]>;
  /** Rows of a window, oldest first, at most `limit` (default and cap MAX_READ_ROWS). */
  window(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    role?: 'primary' | 'shadow',
    limit?: number,
  ): Promise<Prediction[]>;
  /** Pairs of primary and shadow scores of the same requests, oldest first, at most `limit`. */
  pairs(
    model: string,
    champion: string,
    candidate: string,
    fromMs: number,
    toMs: number,
    limit?: number,
  ): Promise<ScorePairRow[]>;
  /** Labelled primary rows of a version (of one slice), oldest first, at most `limit`. */
  labelled(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    limit?: number,
    slice?: SliceFilter,
  ): Promise<LabelledRow[]>;
  /**
   * `pairs` as the bytes of a JSON array, made off the event loop (in the database or a worker
   * thread): tens of thousands of rows would take the event loop tens of milliseconds to copy,
   * parse or serialise, and the admin API only forwards them.
   */
  pairsJson(
    model: string,
    champion: string,
    candidate: string,
    fromMs: number,
    toMs: number,
    limit?: number,
  ): Promise<Buffer>;
  /** `labelled` as the bytes of a JSON array, made off the event loop. */
  labelledJson(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    limit?: number,
    slice?: SliceFilter,
  ): Promise<Buffer>;
  /** Deletes rows older than the retention (in batches); resolves with the rows deleted. */
  prune(nowMs?: number): Promise<number>;
  stats(): PredictionLogStats;
  close(): Promise<void>;
}

/** The storage could not answer (down, restarting, not created yet): a 503, not a bug. */
export class PredictionLogUnavailable extends Error {}

/** Labels per batch at most. */
export const MAX_LABELS = 10_000;
const MAX_KEY = 200;

/** Validates a label batch: an array of {requestId | entityKey, label 0|1}, at most 10000. */
export function checkLabels(labels: unknown): LabelInput[] {
  if (!Array.isArray(labels)) throw new InvalidInputError('labels: expected an array');
  if (labels.length === 0) throw new InvalidInputError('labels: the batch is empty');
  if (labels.length > MAX_LABELS)
    throw new InvalidInputError(`labels: ${labels.length} items, at most ${MAX_LABELS} per batch`);
  return labels.map((raw: unknown, i) => {
    if (!raw || typeof raw !== 'object' || Array.isArray(raw))
      throw new InvalidInputError(`labels[${i}]: expected an object`);
    const item = raw as Record<string, unknown>;
    const own = (name: string) => (Object.hasOwn(item, name) ? item[name] : undefined);
    const key = (name: string) => {
      const v = own(name);
      if (v === undefined) return undefined;
      if (typeof v !== 'string' || v === '' || v.length > MAX_KEY)
        throw new InvalidInputError(`labels[${i}].${name}: expected a string of 1..${MAX_KEY} characters`);
      return v;
    };
    const requestId = key('requestId');
    const entityKey = key('entityKey');
    if ((requestId === undefined) === (entityKey === undefined))
      throw new InvalidInputError(`labels[${i}]: needs exactly one of requestId or entityKey`);
    const label = own('label');
    if (label !== 0 && label !== 1)
      throw new InvalidInputError(
        `labels[${i}].label: expected 0 or 1, got ${JSON.stringify(label) ?? 'nothing'}`,
      );
    return requestId !== undefined ? { requestId, label } : { entityKey: entityKey!, label };
  });
}

/** A read's row limit: the caller's, capped at MAX_READ_ROWS. */
export function readLimit(limit: number | undefined): number {
  if (limit === undefined || !Number.isFinite(limit) || limit <= 0) return MAX_READ_ROWS;
  return Math.min(Math.floor(limit), MAX_READ_ROWS);
}
