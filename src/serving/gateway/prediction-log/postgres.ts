/**
 * The PostgreSQL prediction log. It outlives PostgreSQL restarts: the pool's errors are handled
 * (an idle connection dropping never reaches the process), the schema is created again and again
 * until the server accepts it, and writes wait in a bounded buffer and are retried after reconnect.
 */
import { Pool, type PoolClient } from 'pg';
import { InvalidInputError } from '../../../common/errors';
import { WriteBuffer } from './buffer';
import {
  SQL,
  asJsonArray,
  countsQuery,
  labelledQuery,
  forPostgres,
  foldCounts,
  fromRow,
  insertManyForPostgres,
  schema,
  toRow,
  COLUMNS,
  type Row,
} from './queries';
import { Retention } from './retention';
import {
  PredictionLogUnavailable,
  checkLabels,
  readLimit,
  type LabelledRow,
  type Prediction,
  type PredictionLog,
  type PredictionLogOptions,
  type PredictionLogStats,
  type ScorePairRow,
  type SliceFilter,
  type SliceValue,
  type WindowCounts,
} from './types';

/** Rows per insert statement (12 parameters each, well under PostgreSQL's 65535). */
const BATCH_ROWS = 500;
const MAX_SCHEMA_BACKOFF_MS = 5_000;
/** How long a write or read waits for the schema before it fails as unavailable. */
const READY_WAIT_MS = 5_000;

/** A `:name` statement bound for pg. */
function bind(sql: string, params: Record<string, unknown>): [string, unknown[]] {
  const { text, names } = forPostgres(sql);
  return [text, names.map((n) => params[n])];
}

export class PostgresPredictionLog implements PredictionLog {
  private readonly pool: Pool;
  private readonly buffer: WriteBuffer;
  private readonly retention: Retention;
  private schemaReady = false;
  private lastError = 'not connected yet';
  private closed = false;
  private readonly ready: Promise<void>;

  constructor(connectionString: string, opts: PredictionLogOptions = {}) {
    const onError = opts.onError ?? (() => undefined);
    this.pool = new Pool({
      connectionString,
      max: 4,
      connectionTimeoutMillis: 5_000,
      // A read can take long over a big window, but never hold a connection forever.
      statement_timeout: 30_000,
    });
    // Without a listener, an idle client's error (server restart) would be an uncaught exception.
    this.pool.on('error', (err) => {
      this.lastError = err.message;
      onError(err, 'idle PostgreSQL connection');
    });
    this.ready = this.createSchema(onError);
    this.buffer = new WriteBuffer((rows) => this.insert(rows), {
      maxBuffered: opts.maxBuffered ?? 50_000,
      batchRows: BATCH_ROWS,
      flushEveryMs: opts.flushEveryMs ?? 50,
      onError,
    });
    this.retention = new Retention(
      (before, batch) => this.run(SQL.prune, { before_ms: before, batch }).then((r) => r.rowCount ?? 0),
      opts,
    );
  }

  /** Creates the schema, retrying with backoff until the server takes it (or the log is closed). */
  private async createSchema(onError: (err: unknown, what: string) => void): Promise<void> {
    const s = schema('postgres');
    const statements = [
      ...s.create,
      ...s.addColumns.map(
        ([name, type]) => `alter table predictions add column if not exists ${name} ${type}`,
      ),
      ...s.after,
    ];
    for (let attempt = 1; !this.closed; attempt++) {
      try {
        await this.withClient(async (client) => {
          // One session at a time creates the schema (several gateways may start together).
          await client.query('select pg_advisory_lock(727274)');
          for (const statement of statements) await client.query(statement);
          await client.query('select pg_advisory_unlock(727274)');
        });
        this.schemaReady = true;
        return;
      } catch (err) {
        this.lastError = (err as Error).message;
        onError(err, `creating the prediction log schema (attempt ${attempt})`);
        await new Promise((r) =>
          setTimeout(r, Math.min(MAX_SCHEMA_BACKOFF_MS, 100 * 2 ** Math.min(attempt, 10))).unref(),
        );
      }
    }
  }

  /** A client of its own for a while; its connection dropping meanwhile fails the work, not the process. */
  private async withClient<T>(work: (client: PoolClient) => Promise<T>): Promise<T> {
    const client = await this.pool.connect();
    const onError = (err: Error) => (this.lastError = err.message);
    client.on('error', onError);
    try {
      return await work(client);
    } finally {
      client.removeListener('error', onError);
      client.release();
    }
  }

  /** Waits a little for the schema (at start, or while PostgreSQL is coming back), then gives up. */
  private async whenReady(): Promise<void> {
    if (this.schemaReady) return;
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.ready, new Promise((r) => (timer = setTimeout(r, READY_WAIT_MS)))]);
    clearTimeout(timer);
    if (!this.schemaReady) throw new PredictionLogUnavailable(`PostgreSQL is not ready: ${this.lastError}`);
  }

  private async insert(rows: Prediction[]): Promise<void> {
    await this.whenReady();
    const values: unknown[] = [];
    for (const p of rows) {
      const row = toRow(p);
      for (const c of COLUMNS) values.push(row[c]);
    }
    await this.pool.query(insertManyForPostgres(rows.length), values);
  }

  private async run(sql: string, params: Record<string, unknown>, client?: PoolClient) {
    await this.whenReady();
    const [text, values] = bind(sql, params);
    try {
      return await (client ?? this.pool).query(text, values);
    } catch (err) {
      this.lastError = (err as Error).message;
      throw new PredictionLogUnavailable(`PostgreSQL: ${(err as Error).message}`);
    }
  }

  record(rows: Prediction[]): void {
    this.buffer.push(rows);
  }

  flush(): Promise<void> {
    return this.buffer.flush();
  }

  async ingestLabels(model: string, labels: unknown): Promise<{ labelled: number }> {
    const batch = checkLabels(labels);
    await this.flush();
    const now = Date.now();
    const work = async (client: PoolClient) => {
      await client.query('begin');
      try {
        let labelled = 0;
        for (const [i, item] of batch.entries()) {
          const key = item.requestId ?? item.entityKey;
          const query = item.requestId ? SQL.requestExists : SQL.entityExists;
          const found = await this.run(query, { model, key }, client);
          if (found.rowCount === 0) {
            const what = item.requestId ? `requestId ${item.requestId}` : `entityKey ${item.entityKey}`;
            throw new InvalidInputError(
              `labels[${i}]: ${what} matches no logged prediction of ${model}; the batch was not applied`,
            );
          }
          const result = await this.run(
            item.requestId ? SQL.labelRequest : SQL.labelEntity,
            { label: item.label, now_ms: now, model, key },
            client,
          );
          labelled += result.rowCount ?? 0;
        }
        await client.query('commit');
        return { labelled };
      } catch (err) {
        await client.query('rollback').catch(() => undefined);
        throw err;
      }
    };
    try {
      return await this.withClient(work);
    } catch (err) {
      if (err instanceof InvalidInputError || err instanceof PredictionLogUnavailable) throw err;
      throw new PredictionLogUnavailable(`PostgreSQL: ${(err as Error).message}`);
    }
  }

  async counts(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    role: 'primary' | 'shadow' = 'primary',
    slice?: SliceFilter,
  ): Promise<WindowCounts> {
    await this.flush();
    const q = countsQuery({ model, version, fromMs, toMs, role }, slice);
    const { rows } = await this.run(q.counts, q.params);
    const units = await this.run(q.units, q.params);
    return foldCounts(rows as never[], units.rows[0] as never);
  }

  async sliceValues(
    model: string,
    key: string,
    fromMs: number,
    toMs: number,
    limit: number,
  ): Promise<SliceValue[]> {
    await this.flush();
    const params = { model, slice_key: key, from_ms: fromMs, to_ms: toMs, limit };
    return ((await this.run(SQL.sliceValues, params)).rows as { value: unknown; requests: unknown }[]).map(
      (r) => ({ value: String(r.value), requests: Number(r.requests) }),
    );
  }

  async window(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    role: 'primary' | 'shadow' = 'primary',
    limit?: number,
  ): Promise<Prediction[]> {
    await this.flush();
    const params = { model, version, role, from_ms: fromMs, to_ms: toMs, limit: readLimit(limit) };
    return ((await this.run(SQL.window, params)).rows as Row[]).map(fromRow);
  }

  async pairs(
    model: string,
    champion: string,
    candidate: string,
    fromMs: number,
    toMs: number,
    limit?: number,
  ): Promise<ScorePairRow[]> {
    await this.flush();
    const params = { model, champion, candidate, from_ms: fromMs, to_ms: toMs, limit: readLimit(limit) };
    return (await this.run(SQL.pairs, params)).rows as ScorePairRow[];
  }

  async labelled(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    limit?: number,
    slice?: SliceFilter,
  ): Promise<LabelledRow[]> {
    await this.flush();
    const q = labelledQuery({ model, version, fromMs, toMs, limit: readLimit(limit) }, slice);
    // PostgreSQL gives bigints as strings.
    return ((await this.run(q.sql, q.params)).rows as LabelledRow[]).map((r) => ({
      ...r,
      atMs: Number(r.atMs),
      labelAtMs: Number(r.labelAtMs),
    }));
  }

  async pairsJson(
    model: string,
    champion: string,
    candidate: string,
    fromMs: number,
    toMs: number,
    limit?: number,
  ): Promise<Buffer> {
    await this.flush();
    const params = { model, champion, candidate, from_ms: fromMs, to_ms: toMs, limit: readLimit(limit) };
    return this.json(SQL.pairs, params);
  }

  async labelledJson(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    limit?: number,
    slice?: SliceFilter,
  ): Promise<Buffer> {
    await this.flush();
    const q = labelledQuery({ model, version, fromMs, toMs, limit: readLimit(limit) }, slice);
    return this.json(q.sql, q.params);
  }

  private async json(sql: string, params: Record<string, unknown>): Promise<Buffer> {
    const { rows } = await this.run(asJsonArray(sql), params);
    const json = (rows[0] as { json?: unknown } | undefined)?.json;
    return Buffer.from(typeof json === 'string' ? json : '[]', 'utf8');
  }

  prune(nowMs?: number): Promise<number> {
    return this.retention.run(nowMs);
  }

  stats(): PredictionLogStats {
    return {
      buffered: this.buffer.buffered,
      dropped: this.buffer.dropped,
      written: this.buffer.written,
      pruned: this.retention.pruned,
    };
  }

  async close(): Promise<void> {
    this.retention.stop();
    this.buffer.stop();
    try {
      if (this.schemaReady) await this.buffer.flush();
    } finally {
      this.closed = true;
      await this.ready.catch(() => undefined);
      await this.pool.end();
    }
  }
}
