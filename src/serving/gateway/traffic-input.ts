/**
 * What the gateway reads out of an inference request besides forwarding it: the sticky key, and
 * the input columns live traffic carries (for the feature-schema gate). The body is client input:
 * only own properties are read, and what is remembered is bounded.
 */
import type { IncomingHttpHeaders } from 'node:http';

/** Columns remembered per model at most, and the longest column name remembered. */
export const MAX_FEATURES = 1000;
export const MAX_FEATURE_NAME = 200;

const own = (o: unknown, key: string | number): unknown =>
  o !== null && typeof o === 'object' && Object.hasOwn(o, key)
    ? (o as Record<string, unknown>)[key]
    : undefined;

const scalar = (v: unknown): string | null =>
  typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : null;

/** The first row of MLflow's dataframe_split body as columns and values, when it has that shape. */
function firstSplitRow(body: unknown): { columns: unknown[]; row: unknown[] } | null {
  const split = own(body, 'dataframe_split');
  const columns = own(split, 'columns');
  const data = own(split, 'data');
  const row = Array.isArray(data) ? own(data, 0) : undefined;
  if (!Array.isArray(columns)) return null;
  return { columns, row: Array.isArray(row) ? row : [] };
}

/**
 * The sticky key of a request: a header, or a field of MLflow's dataframe_split / dataframe_records
 * body. At most `maxLength` characters.
 */
export function stickyKeyOf(
  spec: string,
  headers: IncomingHttpHeaders,
  body: unknown,
  maxLength = 200,
): string | null {
  const colon = spec.indexOf(':');
  const kind = spec.slice(0, colon);
  const name = spec.slice(colon + 1);
  let key: string | null;
  if (kind === 'header') {
    const value = own(headers, name.toLowerCase());
    key = typeof value === 'string' && value !== '' ? value : null;
  } else {
    const split = firstSplitRow(body);
    const i = split ? split.columns.indexOf(name) : -1;
    const records = own(body, 'dataframe_records');
    key =
      i >= 0
        ? scalar(own(split!.row, i))
        : scalar(own(Array.isArray(records) ? own(records, 0) : undefined, name));
  }
  return key === null ? null : key.slice(0, maxLength);
}

/** The longest slice value recorded (longer values are cut). */
export const MAX_SLICE_VALUE = 100;

/**
 * A slice value as recorded: at most MAX_SLICE_VALUE UTF-16 units, cut between characters (never
 * inside a surrogate pair), lone surrogates replaced by U+FFFD. A lone surrogate would be written
 * into the JSON column as an escape that PostgreSQL refuses to read back as JSON, failing every
 * slice read over that row.
 */
export function sliceValue(raw: string): string {
  let v = raw.length > MAX_SLICE_VALUE ? raw.slice(0, MAX_SLICE_VALUE) : raw;
  const last = v.charCodeAt(v.length - 1);
  if (raw.length > MAX_SLICE_VALUE && last >= 0xd800 && last <= 0xdbff) v = v.slice(0, -1);
  return v.toWellFormed();
}

/**
 * The request's values of the route's slice keys, as a null-prototype record (null when it has
 * none): what the prediction log records for per-slice checks. Empty values are not recorded;
 * values are cut as `sliceValue` says.
 */
export function sliceValuesOf(
  keys: readonly string[],
  headers: IncomingHttpHeaders,
  body: unknown,
): Record<string, string> | null {
  let out: Record<string, string> | null = null;
  for (const key of keys) {
    const raw = stickyKeyOf(key, headers, body, Infinity);
    if (raw === null || raw === '') continue;
    out ??= Object.create(null) as Record<string, string>;
    out[key] = sliceValue(raw);
  }
  return out;
}

/** The value types a feature is noted with. */
export const FEATURE_TYPES: ReadonlySet<string> = new Set(['long', 'double', 'boolean', 'string']);

const typeOf = (value: unknown) =>
  typeof value === 'number'
    ? Number.isInteger(value)
      ? 'long'
      : 'double'
    : typeof value === 'boolean'
      ? 'boolean'
      : 'string';

/** Records new columns (and value types) of a dataframe_split body; true if any was new. Bounded. */
export function noteFeatures(known: Map<string, string>, body: unknown): boolean {
  const split = firstSplitRow(body);
  if (!split) return false;
  let changed = false;
  const n = Math.min(split.columns.length, MAX_FEATURES);
  for (let i = 0; i < n && known.size < MAX_FEATURES; i++) {
    const column = split.columns[i];
    if (typeof column !== 'string' || column === '' || column.length > MAX_FEATURE_NAME || known.has(column))
      continue;
    known.set(column, typeOf(own(split.row, i)));
    changed = true;
  }
  return changed;
}
