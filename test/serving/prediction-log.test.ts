import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import {
  LATENCY_BOUNDS_MS,
  latencyBucket,
  PostgresPredictionLog,
  SqlitePredictionLog,
  type Prediction,
  type PredictionLog,
  type PredictionLogOptions,
} from '../../src/serving/gateway/prediction-log';
import { sliceValue } from '../../src/serving/gateway/traffic-input';
import { startPostgres, type TestPostgres } from '../helpers/postgres';

let postgres: TestPostgres;
beforeAll(async () => {
  postgres = await startPostgres();
}, 60_000);
afterAll(() => postgres?.stop());

const sqliteFile = () => join(mkdtempSync(join(tmpdir(), 'promote-log-')), 'predictions.db');
const backends: [string, (opts?: PredictionLogOptions) => PredictionLog][] = [
  ['SQLite', (opts) => new SqlitePredictionLog(sqliteFile(), opts)],
  ['PostgreSQL', (opts) => new PostgresPredictionLog(postgres.url, opts)],
];

const row = (over: Partial<Prediction>): Prediction => ({
  requestId: 'r',
  clientRequestId: null,
  entityKey: 'e',
  model: 'm',
  version: 'v1',
  role: 'primary',
  score: 0.5,
  decision: 'review',
  latencyMs: 3,
  status: 200,
  atMs: 1000,
  ...over,
});

const unique = () => `m-${Math.random().toString(36).slice(2)}`;

describe.each(backends)('the %s prediction log', (_name, open) => {
  let log: PredictionLog;
  const model = unique();
  beforeAll(async () => {
    log = open();
    log.record([
      row({ model, requestId: 'a', clientRequestId: 'client-a', entityKey: 'e1', score: 0.9, atMs: 1000 }),
      row({ model, requestId: 'a', entityKey: 'e1', version: 'v2', role: 'shadow', score: 0.7, atMs: 1001 }),
      row({ model, requestId: 'b', entityKey: 'e2', score: 0.1, latencyMs: 40, atMs: 2000 }),
      row({ model, requestId: 'c', entityKey: 'e2', score: null, status: 503, latencyMs: 250, atMs: 3000 }),
    ]);
    // Writes are idempotent on (request id, role).
    log.record([row({ model, requestId: 'a', entityKey: 'e1', score: 0.9, atMs: 1000 })]);
    await log.flush();
  });
  afterAll(async () => log.close());

  test('windows and pairs, limited by the database', async () => {
    expect((await log.window(model, 'v1', 0, 2500)).map((p) => p.requestId)).toEqual(['a', 'b']);
    expect((await log.window(model, 'v1', 0, 2500))[0]).toMatchObject({ clientRequestId: 'client-a' });
    expect((await log.window(model, 'v1', 0, 5000, 'primary', 1)).map((p) => p.requestId)).toEqual(['a']);
    expect((await log.window(model, 'v1', 0, 5000)).find((p) => p.requestId === 'c')).toMatchObject({
      status: 503,
      score: null,
      atMs: 3000,
    });
    expect(await log.pairs(model, 'v1', 'v2', 0, 5000)).toEqual([{ champion: 0.9, candidate: 0.7 }]);
    expect(await log.pairs(model, 'v1', 'v2', 0, 5000, 1)).toHaveLength(1);
    // The same rows as JSON bytes, made off the event loop.
    const json = async (b: Promise<Buffer>) => JSON.parse((await b).toString('utf8')) as unknown;
    expect(await json(log.pairsJson(model, 'v1', 'v2', 0, 5000))).toEqual([
      { champion: 0.9, candidate: 0.7 },
    ]);
    expect(await json(log.pairsJson(model, 'v1', 'v9', 0, 5000))).toEqual([]);
  });

  test('counts: requests, errors and latency buckets aggregated by the database', async () => {
    const counts = await log.counts(model, 'v1', 0, 5000);
    // Units: distinct entity keys (e1, e2), so the sample-ratio check counts entities.
    expect(counts).toMatchObject({ requests: 3, errors: 1, units: 2 });
    expect(counts.latency.maxMs).toBe(250);
    const at = (ms: number) => LATENCY_BOUNDS_MS.findIndex((b) => ms <= b);
    const expected = new Array(LATENCY_BOUNDS_MS.length + 1).fill(0);
    for (const ms of [3, 40, 250]) expected[at(ms)]++;
    expect(counts.latency.counts).toEqual(expected);
    expect(await log.counts(model, 'v2', 0, 5000, 'shadow')).toMatchObject({ requests: 1, errors: 0 });
    expect(await log.counts(model, 'v9', 0, 5000)).toMatchObject({
      requests: 0,
      errors: 0,
      latency: { maxMs: null },
    });
  });

  test('labels: a bad batch changes nothing; a good one joins by request and by entity', async () => {
    await expect(
      log.ingestLabels(model, [
        { requestId: 'a', label: 1 },
        { requestId: 'zzz', label: 0 },
      ]),
    ).rejects.toThrow(
      `labels[1]: requestId zzz matches no logged prediction of ${model}; the batch was not applied`,
    );
    await expect(log.ingestLabels(model, [{ requestId: 'a', label: 1 }, { label: 1 }])).rejects.toThrow(
      'labels[1]: needs exactly one of requestId or entityKey',
    );
    await expect(log.ingestLabels(model, 'nope')).rejects.toThrow('labels: expected an array');
    await expect(log.ingestLabels(model, [{ requestId: 'x'.repeat(201), label: 1 }])).rejects.toThrow(
      'labels[0].requestId: expected a string of 1..200 characters',
    );
    await expect(
      log.ingestLabels(model, new Array(10_001).fill({ requestId: 'a', label: 1 })),
    ).rejects.toThrow('labels: 10001 items, at most 10000 per batch');
    expect(await log.labelled(model, 'v1', 0, Date.now() + 1000)).toEqual([]);
    expect(
      await log.ingestLabels(model, [
        { requestId: 'a', label: 1 },
        { entityKey: 'e2', label: 0 },
      ]),
    ).toEqual({ labelled: 4 });
    const labelled = await log.labelled(model, 'v1', 0, Date.now() + 1000);
    expect(labelled.map((r) => [r.score, r.label]).sort()).toEqual([
      [0.1, 0],
      [0.9, 1],
    ]);
    expect(await log.labelled(model, 'v1', 0, Date.now() + 1000, 1)).toHaveLength(1);
    const json = JSON.parse(
      (await log.labelledJson(model, 'v1', 0, Date.now() + 1000)).toString('utf8'),
    ) as unknown;
    expect(json).toEqual(expect.arrayContaining(labelled));
    expect(json).toHaveLength(2);
  });

  test('slices: counts, units, labelled rows and top values of one slice value, matched exactly', async () => {
    const m = unique();
    const at = (i: number) => 10_000 + i;
    const sliced = (i: number, country: string, over: Partial<Prediction> = {}) =>
      row({
        model: m,
        requestId: `s${i}`,
        entityKey: `e${i}`,
        atMs: at(i),
        slices: { 'field:country': country, 'header:x-region': i % 2 ? 'eu' : 'us' },
        ...over,
      });
    // A value that would change the query if it were pasted into SQL, and a row with no slices.
    const sly = "US' or '1'='1";
    // A lone surrogate as the gateway records it (made well-formed): PostgreSQL reads it as JSON.
    const lone = sliceValue('x\ud83d');
    log.record([
      sliced(1, 'US'),
      sliced(2, 'US', { status: 503, score: null }),
      sliced(3, 'DE', { latencyMs: 80 }),
      sliced(4, 'DE'),
      sliced(5, 'DE'),
      sliced(6, sly),
      row({ model: m, requestId: 's7', entityKey: 'e7', atMs: at(7) }),
      sliced(8, lone, { version: 'v9' }),
    ]);
    await log.flush();
    const us = await log.counts(m, 'v1', 0, 20_000, 'primary', { key: 'field:country', value: 'US' });
    expect([us.requests, us.errors, us.units]).toEqual([2, 1, 2]);
    const de = await log.counts(m, 'v1', 0, 20_000, 'primary', { key: 'field:country', value: 'DE' });
    expect([de.requests, de.errors, de.latency.counts[latencyBucket(80)]]).toEqual([3, 0, 1]);
    expect(
      (await log.counts(m, 'v1', 0, 20_000, 'primary', { key: 'field:country', value: sly })).requests,
    ).toBe(1);
    expect(
      (await log.counts(m, 'v1', 0, 20_000, 'primary', { key: 'field:country', value: 'FR' })).requests,
    ).toBe(0);
    expect(
      (await log.counts(m, 'v1', 0, 20_000, 'primary', { key: 'header:x-region', value: 'eu' })).requests,
    ).toBe(3);
    // A key the rows do not carry matches nothing; the overall counts include every row.
    expect(
      (await log.counts(m, 'v1', 0, 20_000, 'primary', { key: 'field:other', value: 'US' })).requests,
    ).toBe(0);
    expect((await log.counts(m, 'v1', 0, 20_000)).requests).toBe(7);
    expect(await log.sliceValues(m, 'field:country', 0, 20_000, 10)).toEqual([
      { value: 'DE', requests: 3 },
      { value: 'US', requests: 2 },
      { value: sly, requests: 1 },
      { value: 'x\ufffd', requests: 1 },
    ]);
    expect(await log.sliceValues(m, 'field:country', 0, 20_000, 1)).toEqual([{ value: 'DE', requests: 3 }]);
    expect(await log.sliceValues(m, 'field:none', 0, 20_000, 10)).toEqual([]);
    await log.ingestLabels(m, [
      { requestId: 's1', label: 1 },
      { requestId: 's3', label: 0 },
      { requestId: 's4', label: 1 },
    ]);
    const labelled = await log.labelled(m, 'v1', 0, Date.now() + 1000, undefined, {
      key: 'field:country',
      value: 'DE',
    });
    expect(labelled.map((r) => r.atMs)).toEqual([at(3), at(4)]);
    const json = JSON.parse(
      (
        await log.labelledJson(m, 'v1', 0, Date.now() + 1000, undefined, {
          key: 'field:country',
          value: 'US',
        })
      ).toString(),
    ) as { atMs: number }[];
    expect(json.map((r) => Number(r.atMs))).toEqual([at(1)]);
    // The values come back with the rows.
    expect((await log.window(m, 'v1', 0, 20_000))[0]!.slices).toEqual({
      'field:country': 'US',
      'header:x-region': 'eu',
    });
  });

  test('retention: rows older than it are pruned in small batches; newer rows stay', async () => {
    const now = 10 * 86_400_000;
    const pruning = open({ retentionMs: 86_400_000, pruneBatch: 7, pruneEveryMs: 0 });
    const m = unique();
    try {
      const old = Array.from({ length: 30 }, (_, i) =>
        row({ model: m, requestId: `old-${i}`, atMs: now - 2 * 86_400_000 + i }),
      );
      const fresh = Array.from({ length: 5 }, (_, i) =>
        row({ model: m, requestId: `new-${i}`, atMs: now - 1000 + i }),
      );
      pruning.record([...old, ...fresh]);
      await pruning.flush();
      const before = pruning.stats().pruned;
      // The whole log shares one table: count only this model's rows.
      expect((await pruning.counts(m, 'v1', 0, now)).requests).toBe(35);
      await pruning.prune(now);
      expect((await pruning.counts(m, 'v1', 0, now)).requests).toBe(5);
      expect(pruning.stats().pruned - before).toBeGreaterThanOrEqual(30);
    } finally {
      await pruning.close();
    }
  });

  test('retention also runs by itself on its timer', async () => {
    const m = unique();
    const pruning = open({ retentionMs: 60_000, pruneEveryMs: 100 });
    try {
      pruning.record([
        row({ model: m, requestId: 'ancient', atMs: 5 }),
        row({ model: m, requestId: 'now', atMs: Date.now() }),
      ]);
      await pruning.flush();
      for (let i = 0; i < 50 && (await pruning.counts(m, 'v1', 0, Date.now())).requests > 1; i++)
        await new Promise((r) => setTimeout(r, 100));
      expect((await pruning.window(m, 'v1', 0, Date.now())).map((p) => p.requestId)).toEqual(['now']);
    } finally {
      await pruning.close();
    }
  });

  test('a full write buffer drops rows and counts them', async () => {
    const small = open({ maxBuffered: 5, flushEveryMs: 60_000 });
    const m = unique();
    try {
      small.record(Array.from({ length: 8 }, (_, i) => row({ model: m, requestId: `r${i}` })));
      expect(small.stats()).toMatchObject({ buffered: 5, dropped: 3 });
      await small.flush();
      expect(small.stats()).toMatchObject({ buffered: 0, dropped: 3, written: 5 });
      expect((await small.counts(m, 'v1', 0, 5000)).requests).toBe(5);
    } finally {
      await small.close();
    }
  });
});

test('an SQLite log written before latency buckets and client ids is brought up to date on open', async () => {
  const file = sqliteFile();
  const old = new Database(file);
  old.exec(`create table predictions (
    request_id text not null, entity_key text, model text not null, version text not null,
    role text not null, score real, decision text, latency_ms real not null, status integer not null,
    at_ms integer not null, label integer, label_at_ms integer, primary key (request_id, role));
    create index predictions_window on predictions (model, version, at_ms);
    insert into predictions values ('old', 'e', 'm', 'v1', 'primary', 0.5, 'review', 45, 200, 1000, null, null);`);
  old.close();
  const log = new SqlitePredictionLog(file);
  try {
    const counts = await log.counts('m', 'v1', 0, 5000);
    expect(counts.requests).toBe(1);
    expect(counts.latency.counts[latencyBucket(45)]).toBe(1);
    expect(await log.window('m', 'v1', 0, 5000)).toEqual([
      expect.objectContaining({ requestId: 'old', clientRequestId: null, slices: null }),
    ]);
  } finally {
    await log.close();
  }
});
