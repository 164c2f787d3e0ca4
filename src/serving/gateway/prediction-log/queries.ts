/**
 * The prediction log's SQL, once for both dialects. Parameters are written `:name`; SQLite binds
 * them by name, PostgreSQL gets them renumbered `$1..` (see `forPostgres`). Only the column types
 * of the schema differ.
 */
import {
  LATENCY_BOUNDS_MS,
  latencyBucket,
  type Prediction,
  type SliceFilter,
  type WindowCounts,
} from './types';

export type Dialect = 'sqlite' | 'postgres';

export const COLUMNS = [
  'request_id',
  'client_request_id',
  'entity_key',
  'model',
  'version',
  'role',
  'score',
  'decision',
  'latency_ms',
  'latency_bin',
  'status',
  'at_ms',
  'slices',
] as const;

const TYPES: Record<Dialect, { real: string; bigint: string }> = {
  sqlite: { real: 'real', bigint: 'integer' },
  postgres: { real: 'double precision', bigint: 'bigint' },
};

/** The latency bucket of `latency_ms` in SQL, for rows written before buckets were stored. */
const binCase = `case ${LATENCY_BOUNDS_MS.map((b, i) => `when latency_ms <= ${b} then ${i}`).join(' ')} else ${LATENCY_BOUNDS_MS.length} end`;

/** Statements creating (or bringing up to date) the table and its indexes; each is idempotent. */
export function schema(d: Dialect): { create: string[]; addColumns: [string, string][]; after: string[] } {
  const t = TYPES[d];
  return {
    create: [
      `create table if not exists predictions (
        request_id text not null, entity_key text, model text not null, version text not null,
        role text not null, score ${t.real}, decision text, latency_ms ${t.real} not null,
        status integer not null, at_ms ${t.bigint} not null, label integer, label_at_ms ${t.bigint},
        primary key (request_id, role))`,
    ],
    // Columns added after the first release: [name, type]; existing rows get their bucket below.
    addColumns: [
      ['client_request_id', 'text'],
      ['latency_bucket', 'integer'],
      // latency_bucket indexed the first, coarse buckets (no longer written); latency_bin, LATENCY_BOUNDS_MS.
      ['latency_bin', 'integer'],
      // The request's slice values as a JSON object {key: value} (null when the route records none).
      ['slices', 'text'],
    ],
    after: [
      `update predictions set latency_bin = ${binCase} where latency_bin is null`,
      // Measurements read only this index (model, version, role, time range -> status, bucket, unit).
      `drop index if exists predictions_measure`,
      `create index if not exists predictions_counts on predictions (model, version, role, at_ms, status, latency_bin, latency_ms, entity_key)`,
      `drop index if exists predictions_window`,
      `create index if not exists predictions_entity on predictions (model, entity_key)`,
      `create index if not exists predictions_age on predictions (at_ms)`,
      // Labels join by request id: without this index the planner walks every row of the model.
      `create index if not exists predictions_request on predictions (model, request_id)`,
      // Labelled reads touch only labelled rows (covering, so the table is not visited).
      `drop index if exists predictions_labelled`,
      `create index if not exists predictions_labelled_rows on predictions (model, version, role, at_ms, label_at_ms, score, label) where label is not null`,
    ],
  };
}

/**
 * A row's value for the slice key `:slice_key` (SQLite's JSON path; the key is `header:x` or
 * `field:x`, letters, digits and . _ - only, so it cannot end the quoted path). `forPostgres`
 * turns it into PostgreSQL's JSON operator.
 */
const SLICE = `json_extract(slices, '$."' || :slice_key || '"')`;
const SLICE_PG = `(cast(slices as json) ->> cast(:slice_key as text))`;
const IN_SLICE = `and ${SLICE} = :slice_value`;

const COUNTS = `select latency_bin as bucket, count(*) as n,
      sum(case when status >= 400 then 1 else 0 end) as errors, max(latency_ms) as max_ms
    from predictions
    where model = :model and version = :version and role = :role and at_ms >= :from_ms and at_ms <= :to_ms`;
const UNITS = `select count(distinct entity_key) as entities, sum(case when entity_key is null then 1 else 0 end) as keyless
    from predictions
    where model = :model and version = :version and role = :role and at_ms >= :from_ms and at_ms <= :to_ms`;
const LABELLED = `select version, score, label, at_ms as "atMs", label_at_ms as "labelAtMs" from predictions
    where model = :model and version = :version and role = 'primary' and label is not null
      and score is not null and at_ms >= :from_ms and at_ms <= :to_ms and label_at_ms <= :to_ms`;

export const SQL = {
  insert: `insert into predictions (${COLUMNS.join(', ')}) values (${COLUMNS.map((c) => `:${c}`).join(', ')}) on conflict do nothing`,

  counts: `${COUNTS} group by latency_bin`,
  /** The counts of the requests of one slice value (reads the rows: the covering index has no slices). */
  sliceCounts: `${COUNTS} ${IN_SLICE} group by latency_bin`,

  /** Assignment units of a window: distinct entity keys, and requests that carried none. */
  units: UNITS,
  sliceUnits: `${UNITS} ${IN_SLICE}`,

  /** The values of a slice key with the most primary requests in a window, most first. */
  sliceValues: `select ${SLICE} as value, count(*) as requests from predictions
    where model = :model and role = 'primary' and at_ms >= :from_ms and at_ms <= :to_ms and ${SLICE} is not null
    group by 1 order by 2 desc, 1 limit :limit`,

  window: `select ${COLUMNS.join(', ')} from predictions
    where model = :model and version = :version and role = :role and at_ms >= :from_ms and at_ms <= :to_ms
    order by at_ms limit :limit`,

  pairs: `select p.score as champion, s.score as candidate
    from predictions p join predictions s on s.request_id = p.request_id and s.role = 'shadow'
    where p.model = :model and p.version = :champion and p.role = 'primary' and s.version = :candidate
      and p.at_ms >= :from_ms and p.at_ms <= :to_ms and p.score is not null and s.score is not null
    order by p.at_ms limit :limit`,

  labelled: `${LABELLED} order by at_ms limit :limit`,
  sliceLabelled: `${LABELLED} ${IN_SLICE} order by at_ms limit :limit`,

  requestExists: `select 1 as found from predictions where model = :model and request_id = :key limit 1`,
  entityExists: `select 1 as found from predictions where model = :model and entity_key = :key limit 1`,
  labelRequest: `update predictions set label = :label, label_at_ms = :now_ms where model = :model and request_id = :key`,
  labelEntity: `update predictions set label = :label, label_at_ms = :now_ms
    where model = :model and entity_key = :key and label is null and at_ms <= :now_ms`,

  /** One small batch of the oldest rows past retention (the age index finds them). */
  prune: `delete from predictions where (request_id, role) in
    (select request_id, role from predictions where at_ms < :before_ms limit :batch)`,
} as const;

export type Query = keyof typeof SQL;

type Window = { model: string; version: string; fromMs: number; toMs: number };
const inSlice = (slice: SliceFilter | null | undefined) =>
  slice ? { slice_key: slice.key, slice_value: slice.value } : {};

/** The counts and units statements of a window (of one slice, when given) and their parameters. */
export function countsQuery(w: Window & { role: string }, slice: SliceFilter | null | undefined) {
  return {
    counts: slice ? SQL.sliceCounts : SQL.counts,
    units: slice ? SQL.sliceUnits : SQL.units,
    params: {
      model: w.model,
      version: w.version,
      role: w.role,
      from_ms: w.fromMs,
      to_ms: w.toMs,
      ...inSlice(slice),
    },
  };
}

/** The labelled-rows statement of a window (of one slice, when given) and its parameters. */
export function labelledQuery(w: Window & { limit: number }, slice: SliceFilter | null | undefined) {
  return {
    sql: slice ? SQL.sliceLabelled : SQL.labelled,
    params: {
      model: w.model,
      version: w.version,
      from_ms: w.fromMs,
      to_ms: w.toMs,
      limit: w.limit,
      ...inSlice(slice),
    },
  };
}

/**
 * PostgreSQL: a row query's answer as one JSON text value (`json`), built by the server, so the
 * gateway's event loop never parses or serialises the rows one by one.
 */
export function asJsonArray(sql: string): string {
  return `select cast(coalesce(json_agg(t), cast('[]' as json)) as text) as json from (${sql}) t`;
}

/** A statement with `:name` parameters as PostgreSQL wants it: `$n` placeholders and their order. */
export function forPostgres(sql: string): { text: string; names: string[] } {
  const names: string[] = [];
  const text = sql
    .split(SLICE)
    .join(SLICE_PG)
    .replace(/:([a-z_]+)/g, (_, name: string) => {
      let i = names.indexOf(name);
      if (i < 0) i = names.push(name) - 1;
      return `$${i + 1}`;
    });
  return { text, names };
}

/** PostgreSQL: the insert statement for `n` rows at once ($1.. in COLUMNS order, row after row). */
export function insertManyForPostgres(n: number): string {
  const tuples = Array.from(
    { length: n },
    (_, r) => `(${COLUMNS.map((_c, j) => `$${r * COLUMNS.length + j + 1}`).join(', ')})`,
  );
  return `insert into predictions (${COLUMNS.join(', ')}) values ${tuples.join(', ')} on conflict do nothing`;
}

export type Row = Record<(typeof COLUMNS)[number], unknown>;

/** A prediction as the parameters of `SQL.insert` (the latency bucket is computed here, once). */
export function toRow(p: Prediction): Row {
  return {
    request_id: p.requestId,
    client_request_id: p.clientRequestId,
    entity_key: p.entityKey,
    model: p.model,
    version: p.version,
    role: p.role,
    score: p.score,
    decision: p.decision,
    latency_ms: p.latencyMs,
    latency_bin: latencyBucket(p.latencyMs),
    status: p.status,
    at_ms: p.atMs,
    slices: p.slices ? JSON.stringify(p.slices) : null,
  };
}

/** A stored slices value read back: an object of strings, or null (anything else is ignored). */
function slicesOf(v: unknown): Record<string, string> | null {
  if (typeof v !== 'string') return null;
  try {
    const parsed: unknown = JSON.parse(v);
    if (!parsed || typeof parsed !== 'object' || Array.isArray(parsed)) return null;
    const out = Object.create(null) as Record<string, string>;
    for (const [k, value] of Object.entries(parsed)) if (typeof value === 'string') out[k] = value;
    return out;
  } catch {
    return null;
  }
}

/** A row read back (PostgreSQL gives bigints as strings). */
export function fromRow(r: Row): Prediction {
  const text = (v: unknown) =>
    typeof v === 'string' ? v : typeof v === 'number' || typeof v === 'bigint' ? String(v) : null;
  const num = (v: unknown) => (v === null || v === undefined ? null : Number(v));
  return {
    requestId: text(r.request_id) ?? '',
    clientRequestId: text(r.client_request_id),
    entityKey: text(r.entity_key),
    model: text(r.model) ?? '',
    version: text(r.version) ?? '',
    role: r.role === 'shadow' ? 'shadow' : 'primary',
    score: num(r.score),
    decision: text(r.decision),
    latencyMs: Number(r.latency_ms),
    status: Number(r.status),
    atMs: Number(r.at_ms),
    slices: slicesOf(r.slices),
  };
}

/** Folds the rows of `SQL.counts` into window counts. */
export function foldCounts(
  rows: { bucket: unknown; n: unknown; errors: unknown; max_ms: unknown }[],
  units: { entities: unknown; keyless: unknown } | undefined,
): WindowCounts {
  const counts = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
  let requests = 0;
  let errors = 0;
  let maxMs: number | null = null;
  for (const r of rows) {
    const n = Number(r.n);
    const bucket = Math.min(Math.max(Number(r.bucket), 0), LATENCY_BOUNDS_MS.length);
    counts[bucket] = (counts[bucket] ?? 0) + n;
    requests += n;
    errors += Number(r.errors);
    if (r.max_ms !== null && (maxMs === null || Number(r.max_ms) > maxMs)) maxMs = Number(r.max_ms);
  }
  const unitCount = Number(units?.entities ?? 0) + Number(units?.keyless ?? 0);
  return { requests, errors, units: unitCount, latency: { boundsMs: LATENCY_BOUNDS_MS, counts, maxMs } };
}
