import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import {
  PostgresPredictionLog,
  SqlitePredictionLog,
  type Prediction,
  type PredictionLog,
} from '../../src/serving/gateway/prediction-log';
import { startPostgres, type TestPostgres } from '../helpers/postgres';

let postgres: TestPostgres;
beforeAll(async () => {
  postgres = await startPostgres();
}, 60_000);
afterAll(() => postgres?.stop());

const backends: [string, () => PredictionLog][] = [
  [
    'SQLite',
    () => new SqlitePredictionLog(join(mkdtempSync(join(tmpdir(), 'promote-log-')), 'predictions.db')),
  ],
  ['PostgreSQL', () => new PostgresPredictionLog(postgres.url)],
];

const row = (over: Partial<Prediction>): Prediction => ({
  requestId: 'r',
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

describe.each(backends)('the %s prediction log', (_name, open) => {
  let log: PredictionLog;
  const model = `m-${Math.random().toString(36).slice(2)}`;
  beforeAll(async () => {
    log = open();
    await log.record([
      row({ model, requestId: 'a', entityKey: 'e1', score: 0.9, atMs: 1000 }),
      row({ model, requestId: 'a', entityKey: 'e1', version: 'v2', role: 'shadow', score: 0.7, atMs: 1001 }),
      row({ model, requestId: 'b', entityKey: 'e2', score: 0.1, atMs: 2000 }),
      row({ model, requestId: 'c', entityKey: 'e2', score: null, status: 503, atMs: 3000 }),
    ]);
    // Writes are idempotent on (request id, role).
    await log.record([row({ model, requestId: 'a', entityKey: 'e1', score: 0.9, atMs: 1000 })]);
  });
  afterAll(async () => log.close());

  test('windows, pairs', async () => {
    expect((await log.window(model, 'v1', 0, 2500)).map((p) => p.requestId).sort()).toEqual(['a', 'b']);
    expect((await log.window(model, 'v1', 0, 5000)).find((p) => p.requestId === 'c')).toMatchObject({
      status: 503,
      score: null,
      atMs: 3000,
    });
    expect(await log.pairs(model, 'v1', 'v2', 0, 5000)).toEqual([{ champion: 0.9, candidate: 0.7 }]);
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
  });
});
