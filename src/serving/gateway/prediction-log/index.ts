/**
 * The prediction log: SQLite by default (statements in worker threads), PostgreSQL by configuration;
 * one interface (types.ts) and one set of queries (queries.ts).
 */
import { PostgresPredictionLog } from './postgres';
import { SqlitePredictionLog } from './sqlite';
import type { PredictionLog, PredictionLogOptions } from './types';

export * from './types';
export { measureCounts, histogramQuantile, type WindowMeasurement } from './measure';
export { PostgresPredictionLog } from './postgres';
export { SqlitePredictionLog } from './sqlite';

/** Opens the log named by `sqlite:<file>` or a `postgres://` URL. */
export function openPredictionLog(spec: string, opts: PredictionLogOptions = {}): PredictionLog {
  if (spec.startsWith('postgres://') || spec.startsWith('postgresql://'))
    return new PostgresPredictionLog(spec, opts);
  if (spec.startsWith('sqlite:')) return new SqlitePredictionLog(spec.slice('sqlite:'.length), opts);
  throw new Error(`PROMOTE_PREDICTION_LOG must be sqlite:<file> or a postgres:// URL, got "${spec}"`);
}
