/**
 * The prediction log: every primary and shadow prediction the gateway served, joinable to labels
 * that arrive later. SQLite by default (better-sqlite3, WAL), PostgreSQL by configuration.
 */
import { mkdirSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { Pool } from 'pg';
import { InvalidInputError } from '../../common/errors';

export interface Prediction {
  requestId: string;
  entityKey: string | null;
  model: string;
  version: string;
  role: 'primary' | 'shadow';
  score: number | null;
  decision: string | null;
  latencyMs: number;
  status: number;
  atMs: number;
}

export interface LabelInput {
  requestId?: string;
  entityKey?: string;
  label: number;
}

export interface LabelledRow {
  version: string;
  score: number;
  label: number;
}

/** Storage of the prediction log. Writes are idempotent on (requestId, role). */
export interface PredictionLog {
  record(rows: Prediction[]): Promise<void>;
  /** Joins labels to predictions; refuses the whole batch (nothing written) if any item is bad. */
  ingestLabels(model: string, labels: unknown): Promise<{ labelled: number }>;
  window(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    role?: 'primary' | 'shadow',
  ): Promise<Prediction[]>;
  /** Pairs of primary and shadow scores of the same requests. */
  pairs(
    model: string,
    champion: string,
    candidate: string,
    fromMs: number,
    toMs: number,
  ): Promise<{ champion: number; candidate: number }[]>;
  labelled(model: string, version: string, fromMs: number, toMs: number): Promise<LabelledRow[]>;
  close(): Promise<void>;
}

/** Validates a label batch: an array of {requestId | entityKey, label 0|1}, at most 10000. */
export function checkLabels(labels: unknown): LabelInput[] {
  if (!Array.isArray(labels)) throw new InvalidInputError('labels: expected an array');
  if (labels.length === 0) throw new InvalidInputError('labels: the batch is empty');
  if (labels.length > 10_000)
    throw new InvalidInputError(`labels: ${labels.length} items, at most 10000 per batch`);
  return labels.map((raw, i) => {
    const item = raw as Record<string, unknown> | null;
    if (!item || typeof item !== 'object') throw new InvalidInputError(`labels[${i}]: expected an object`);
    const hasRequest = typeof item.requestId === 'string' && item.requestId !== '';
    const hasEntity = typeof item.entityKey === 'string' && item.entityKey !== '';
    if (hasRequest === hasEntity)
      throw new InvalidInputError(`labels[${i}]: needs exactly one of requestId or entityKey`);
    if (item.label !== 0 && item.label !== 1)
      throw new InvalidInputError(`labels[${i}].label: expected 0 or 1, got ${JSON.stringify(item.label)}`);
    return hasRequest
      ? { requestId: item.requestId as string, label: item.label }
      : { entityKey: item.entityKey as string, label: item.label };
  });
}

const COLUMNS = 'request_id, entity_key, model, version, role, score, decision, latency_ms, status, at_ms';

interface Row {
  request_id: string;
  entity_key: string | null;
  model: string;
  version: string;
  role: 'primary' | 'shadow';
  score: number | null;
  decision: string | null;
  latency_ms: number;
  status: number;
  at_ms: number | string;
}

const fromRow = (r: Row): Prediction => ({
  requestId: r.request_id,
  entityKey: r.entity_key,
  model: r.model,
  version: r.version,
  role: r.role,
  score: r.score,
  decision: r.decision,
  latencyMs: r.latency_ms,
  status: r.status,
  atMs: Number(r.at_ms),
});

export class SqlitePredictionLog implements PredictionLog {
  private readonly db: Database.Database;

  constructor(file: string) {
    mkdirSync(dirname(file), { recursive: true });
    this.db = new Database(file);
    this.db.pragma('journal_mode = WAL');
    this.db.pragma('synchronous = NORMAL');
    this.db.exec(`
      create table if not exists predictions (
        request_id text not null, entity_key text, model text not null, version text not null,
        role text not null, score real, decision text, latency_ms real not null, status integer not null,
        at_ms integer not null, label integer, label_at_ms integer,
        primary key (request_id, role));
      create index if not exists predictions_window on predictions (model, version, at_ms);
      create index if not exists predictions_entity on predictions (model, entity_key);`);
  }

  record(rows: Prediction[]): Promise<void> {
    const insert = this.db.prepare(
      `insert or ignore into predictions (${COLUMNS}) values (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    );
    this.db.transaction(() => {
      for (const p of rows)
        insert.run(
          p.requestId,
          p.entityKey,
          p.model,
          p.version,
          p.role,
          p.score,
          p.decision,
          p.latencyMs,
          p.status,
          p.atMs,
        );
    })();
    return Promise.resolve();
  }

  ingestLabels(model: string, labels: unknown): Promise<{ labelled: number }> {
    // Errors become rejections (not throws), like the PostgreSQL log's.
    return Promise.resolve().then(() => this.ingestNow(model, labels));
  }

  private ingestNow(model: string, labels: unknown): { labelled: number } {
    const batch = checkLabels(labels);
    const now = Date.now();
    const exists = this.db.prepare('select 1 from predictions where model = ? and request_id = ? limit 1');
    const entityExists = this.db.prepare(
      'select 1 from predictions where model = ? and entity_key = ? limit 1',
    );
    const byRequest = this.db.prepare(
      'update predictions set label = ?, label_at_ms = ? where model = ? and request_id = ?',
    );
    const byEntity = this.db.prepare(
      'update predictions set label = ?, label_at_ms = ? where model = ? and entity_key = ? and label is null and at_ms <= ?',
    );
    let labelled = 0;
    this.db.transaction(() => {
      batch.forEach((item, i) => {
        const found = item.requestId
          ? exists.get(model, item.requestId)
          : entityExists.get(model, item.entityKey);
        if (!found) {
          const what = item.requestId ? `requestId ${item.requestId}` : `entityKey ${item.entityKey}`;
          throw new InvalidInputError(
            `labels[${i}]: ${what} matches no logged prediction of ${model}; the batch was not applied`,
          );
        }
        labelled += item.requestId
          ? byRequest.run(item.label, now, model, item.requestId).changes
          : byEntity.run(item.label, now, model, item.entityKey, now).changes;
      });
    })();
    return { labelled };
  }

  window(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    role: 'primary' | 'shadow' = 'primary',
  ): Promise<Prediction[]> {
    const rows = this.db
      .prepare(
        `select ${COLUMNS} from predictions where model = ? and version = ? and role = ? and at_ms between ? and ?`,
      )
      .all(model, version, role, fromMs, toMs) as Row[];
    return Promise.resolve(rows.map(fromRow));
  }

  pairs(
    model: string,
    champion: string,
    candidate: string,
    fromMs: number,
    toMs: number,
  ): Promise<{ champion: number; candidate: number }[]> {
    const rows = this.db
      .prepare(
        `select p.score as champion, s.score as candidate from predictions p join predictions s on s.request_id = p.request_id
         where p.model = ? and p.role = 'primary' and p.version = ? and s.role = 'shadow' and s.version = ?
           and p.at_ms between ? and ? and p.score is not null and s.score is not null`,
      )
      .all(model, champion, candidate, fromMs, toMs) as { champion: number; candidate: number }[];
    return Promise.resolve(rows);
  }

  labelled(model: string, version: string, fromMs: number, toMs: number): Promise<LabelledRow[]> {
    const rows = this.db
      .prepare(
        `select version, score, label from predictions where model = ? and version = ? and role = 'primary'
           and label is not null and score is not null and at_ms between ? and ? and label_at_ms <= ?`,
      )
      .all(model, version, fromMs, toMs, toMs) as LabelledRow[];
    return Promise.resolve(rows);
  }

  close(): Promise<void> {
    this.db.close();
    return Promise.resolve();
  }
}

export class PostgresPredictionLog implements PredictionLog {
  private readonly pool: Pool;
  private ready: Promise<void>;

  constructor(connectionString: string) {
    this.pool = new Pool({ connectionString, max: 4 });
    this.ready = this.pool
      .query(
        `create table if not exists predictions (
          request_id text not null, entity_key text, model text not null, version text not null,
          role text not null, score double precision, decision text, latency_ms double precision not null,
          status integer not null, at_ms bigint not null, label integer, label_at_ms bigint,
          primary key (request_id, role));
        create index if not exists predictions_window on predictions (model, version, at_ms);
        create index if not exists predictions_entity on predictions (model, entity_key);`,
      )
      .then(() => undefined);
  }

  async record(rows: Prediction[]): Promise<void> {
    await this.ready;
    if (rows.length === 0) return;
    const values: unknown[] = [];
    const tuples = rows.map((p, i) => {
      values.push(
        p.requestId,
        p.entityKey,
        p.model,
        p.version,
        p.role,
        p.score,
        p.decision,
        p.latencyMs,
        p.status,
        p.atMs,
      );
      return `(${Array.from({ length: 10 }, (_, j) => `$${i * 10 + j + 1}`).join(', ')})`;
    });
    await this.pool.query(
      `insert into predictions (${COLUMNS}) values ${tuples.join(', ')} on conflict do nothing`,
      values,
    );
  }

  async ingestLabels(model: string, labels: unknown): Promise<{ labelled: number }> {
    const batch = checkLabels(labels);
    await this.ready;
    const client = await this.pool.connect();
    const now = Date.now();
    try {
      await client.query('begin');
      let labelled = 0;
      for (const [i, item] of batch.entries()) {
        const found = item.requestId
          ? await client.query('select 1 from predictions where model = $1 and request_id = $2 limit 1', [
              model,
              item.requestId,
            ])
          : await client.query('select 1 from predictions where model = $1 and entity_key = $2 limit 1', [
              model,
              item.entityKey,
            ]);
        if (found.rowCount === 0) {
          const what = item.requestId ? `requestId ${item.requestId}` : `entityKey ${item.entityKey}`;
          throw new InvalidInputError(
            `labels[${i}]: ${what} matches no logged prediction of ${model}; the batch was not applied`,
          );
        }
        const result = item.requestId
          ? await client.query(
              'update predictions set label = $1, label_at_ms = $2 where model = $3 and request_id = $4',
              [item.label, now, model, item.requestId],
            )
          : await client.query(
              'update predictions set label = $1, label_at_ms = $2 where model = $3 and entity_key = $4 and label is null and at_ms <= $2',
              [item.label, now, model, item.entityKey],
            );
        labelled += result.rowCount ?? 0;
      }
      await client.query('commit');
      return { labelled };
    } catch (err) {
      await client.query('rollback');
      throw err;
    } finally {
      client.release();
    }
  }

  async window(
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    role: 'primary' | 'shadow' = 'primary',
  ): Promise<Prediction[]> {
    await this.ready;
    const { rows } = await this.pool.query<Row>(
      `select ${COLUMNS} from predictions where model = $1 and version = $2 and role = $3 and at_ms between $4 and $5`,
      [model, version, role, fromMs, toMs],
    );
    return rows.map(fromRow);
  }

  async pairs(
    model: string,
    champion: string,
    candidate: string,
    fromMs: number,
    toMs: number,
  ): Promise<{ champion: number; candidate: number }[]> {
    await this.ready;
    const { rows } = await this.pool.query<{ champion: number; candidate: number }>(
      `select p.score as champion, s.score as candidate from predictions p join predictions s on s.request_id = p.request_id
       where p.model = $1 and p.role = 'primary' and p.version = $2 and s.role = 'shadow' and s.version = $3
         and p.at_ms between $4 and $5 and p.score is not null and s.score is not null`,
      [model, champion, candidate, fromMs, toMs],
    );
    return rows;
  }

  async labelled(model: string, version: string, fromMs: number, toMs: number): Promise<LabelledRow[]> {
    await this.ready;
    const { rows } = await this.pool.query<LabelledRow>(
      `select version, score, label from predictions where model = $1 and version = $2 and role = 'primary'
         and label is not null and score is not null and at_ms between $3 and $4 and label_at_ms <= $4`,
      [model, version, fromMs, toMs],
    );
    return rows;
  }

  async close(): Promise<void> {
    await this.pool.end();
  }
}
