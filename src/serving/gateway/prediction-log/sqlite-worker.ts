/**
 * The SQLite side of the prediction log, run in a worker thread (see sqlite.ts): one connection,
 * one statement at a time, answers posted back. The writer thread takes batches (one transaction
 * each), labels and pruning; the reader thread only selects, so a long read never delays writes.
 */
import { mkdirSync, readlinkSync } from 'node:fs';
import { setPriority } from 'node:os';
import { basename, dirname } from 'node:path';
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import { InvalidInputError } from '../../../common/errors';
import { SQL, countsQuery, foldCounts, fromRow, labelledQuery, schema, toRow, type Row } from './queries';
import type { LabelInput, Prediction, SliceFilter } from './types';

const { file, role } = workerData as { file: string; role: 'writer' | 'reader' };

function open(): Database.Database {
  if (role === 'writer') mkdirSync(dirname(file), { recursive: true });
  const db = new Database(file);
  db.pragma('busy_timeout = 5000');
  if (role === 'reader') return db;
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = NORMAL');
  const s = schema('sqlite');
  for (const statement of s.create) db.exec(statement);
  const present = new Set((db.pragma('table_info(predictions)') as { name: string }[]).map((c) => c.name));
  for (const [name, type] of s.addColumns)
    if (!present.has(name)) db.exec(`alter table predictions add column ${name} ${type}`);
  for (const statement of s.after) db.exec(statement);
  return db;
}

/**
 * This thread yields the CPU to the event loop that serves inference: on a busy machine a long
 * read would otherwise delay it by taking its core. Linux niceness is per thread (by thread id);
 * elsewhere, or when not allowed, the thread keeps the normal priority.
 */
function yieldToInference(): void {
  try {
    const tid = Number(basename(readlinkSync('/proc/thread-self')));
    if (Number.isInteger(tid) && tid > 0) setPriority(tid, 10);
  } catch {
    // not Linux, or not permitted: normal priority
  }
}

yieldToInference();
const db = open();
const statements = new Map<string, Database.Statement>();
const stmt = (sql: string) => {
  let s = statements.get(sql);
  if (!s) statements.set(sql, (s = db.prepare(sql)));
  return s;
};

const insertBatch = db.transaction((rows: Prediction[]) => {
  const insert = stmt(SQL.insert);
  for (const p of rows) insert.run(toRow(p));
});

const ingest = db.transaction((model: string, batch: LabelInput[], nowMs: number) => {
  let labelled = 0;
  batch.forEach((item, i) => {
    const key = item.requestId ?? item.entityKey;
    const found = stmt(item.requestId ? SQL.requestExists : SQL.entityExists).get({ model, key });
    if (!found) {
      const what = item.requestId ? `requestId ${item.requestId}` : `entityKey ${item.entityKey}`;
      throw new InvalidInputError(
        `labels[${i}]: ${what} matches no logged prediction of ${model}; the batch was not applied`,
      );
    }
    labelled += stmt(item.requestId ? SQL.labelRequest : SQL.labelEntity).run({
      label: item.label,
      now_ms: nowMs,
      model,
      key,
    }).changes;
  });
  return { labelled };
});

type Op = (...args: never[]) => unknown;

const pairs = (
  model: string,
  champion: string,
  candidate: string,
  from_ms: number,
  to_ms: number,
  limit: number,
) => stmt(SQL.pairs).all({ model, champion, candidate, from_ms, to_ms, limit });
const labelled = (
  model: string,
  version: string,
  fromMs: number,
  toMs: number,
  limit: number,
  slice: SliceFilter | null,
) => {
  const q = labelledQuery({ model, version, fromMs, toMs, limit }, slice);
  return stmt(q.sql).all(q.params);
};

/** JSON as bytes in an ArrayBuffer of their own (transferable without a copy). */
const jsonBytes = (value: unknown): Uint8Array => new TextEncoder().encode(JSON.stringify(value));
const ops: Record<string, Op> = {
  ping: () => true,
  insert: (rows: Prediction[]) => insertBatch(rows),
  labels: (model: string, batch: LabelInput[], nowMs: number) => ingest(model, batch, nowMs),
  counts: (
    model: string,
    version: string,
    fromMs: number,
    toMs: number,
    role: string,
    slice: SliceFilter | null,
  ) => {
    const q = countsQuery({ model, version, fromMs, toMs, role }, slice);
    return foldCounts(stmt(q.counts).all(q.params) as never[], stmt(q.units).get(q.params) as never);
  },
  sliceValues: (model: string, slice_key: string, from_ms: number, to_ms: number, limit: number) =>
    (
      stmt(SQL.sliceValues).all({ model, slice_key, from_ms, to_ms, limit }) as {
        value: unknown;
        requests: unknown;
      }[]
    ).map((r) => ({ value: String(r.value), requests: Number(r.requests) })),
  window: (model: string, version: string, from_ms: number, to_ms: number, role: string, limit: number) =>
    (stmt(SQL.window).all({ model, version, role, from_ms, to_ms, limit }) as Row[]).map(fromRow),
  pairs,
  labelled,
  // The answer's JSON is made here, off the gateway's event loop, and its bytes are transferred.
  pairsJson: (...args: Parameters<typeof pairs>) => jsonBytes(pairs(...args)),
  labelledJson: (...args: Parameters<typeof labelled>) => jsonBytes(labelled(...args)),
  prune: (before_ms: number, batch: number) => stmt(SQL.prune).run({ before_ms, batch }).changes,
  close: () => db.close(),
};

parentPort!.on('message', ({ id, op, args }: { id: number; op: string; args: never[] }) => {
  try {
    const fn = Object.hasOwn(ops, op) ? ops[op] : undefined;
    if (!fn) throw new Error(`unknown operation ${op}`);
    const result = fn(...args);
    const transfer = result instanceof Uint8Array ? [result.buffer as ArrayBuffer] : [];
    parentPort!.postMessage({ id, ok: true, result }, transfer);
  } catch (err) {
    const type = err instanceof InvalidInputError ? 'InvalidInput' : 'Error';
    parentPort!.postMessage({ id, ok: false, error: { type, message: (err as Error).message } });
  }
});
