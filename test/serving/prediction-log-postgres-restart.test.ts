/**
 * The PostgreSQL prediction log outlives a PostgreSQL restart under live traffic: the gateway keeps
 * answering, idle connections that drop do not take the process down, and rows written while the
 * server was down or after it came back arrive.
 */
import { PostgresPredictionLog } from '../../src/serving/gateway/prediction-log';
import { MODEL, startGateway, upstream, type TestGateway, type Upstream } from '../helpers/gateway';
import { startPostgres, type TestPostgres } from '../helpers/postgres';

let postgres: TestPostgres;
let log: PostgresPredictionLog;
let v1: Upstream;
let g: TestGateway;
const errors: string[] = [];

beforeAll(async () => {
  postgres = await startPostgres();
  log = new PostgresPredictionLog(postgres.url, {
    onError: (err, what) => errors.push(`${what}: ${String(err)}`),
  });
  v1 = await upstream(0.3);
  g = await startGateway({ log });
  await g.admin('PUT', `backends/${MODEL}/v1`, { url: v1.url });
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 } });
}, 60_000);

afterAll(async () => {
  await g?.close();
  await log?.close().catch(() => undefined);
  v1?.close();
  postgres?.stop();
});

test('requests keep flowing through a PostgreSQL restart, and their rows arrive afterwards', async () => {
  const sent: { requestId: string; status: number; phase: 'before' | 'during' | 'after' }[] = [];
  let phase: 'before' | 'during' | 'after' = 'before';
  let stop = false;
  const traffic = (async () => {
    for (let i = 0; i < 2000 && !stop; i++) {
      const answer = await g.invoke(`e${i}`);
      sent.push({ requestId: answer.requestId ?? '', status: answer.status, phase });
      await new Promise((r) => setTimeout(r, 10));
    }
  })();
  await new Promise((r) => setTimeout(r, 1000));
  await log.flush(); // everything so far is in PostgreSQL
  phase = 'during';
  await postgres.restart(1500);
  phase = 'after';
  await new Promise((r) => setTimeout(r, 1500));
  stop = true;
  await traffic;

  // The gateway answered every request, whatever PostgreSQL was doing.
  expect(sent.filter((s) => s.status !== 200)).toEqual([]);
  for (const p of ['before', 'during', 'after'] as const)
    expect(sent.filter((s) => s.phase === p).length).toBeGreaterThan(10);
  // The restart was felt (writes failed and were retried), and nothing was dropped.
  expect(errors.length).toBeGreaterThan(0);
  for (let i = 0; i < 100; i++) {
    const ok = await log.flush().then(
      () => true,
      () => false,
    );
    if (ok) break;
    await new Promise((r) => setTimeout(r, 200));
  }
  expect(log.stats()).toMatchObject({ buffered: 0, dropped: 0 });
  const logged = new Set((await log.window(MODEL, 'v1', 0, Date.now() + 1000)).map((p) => p.requestId));
  const missing = sent.filter((s) => !logged.has(s.requestId));
  expect(missing).toEqual([]);
  expect((await log.counts(MODEL, 'v1', 0, Date.now() + 1000)).requests).toBe(sent.length);
  // Reads and writes work again on fresh connections.
  expect((await g.admin('GET', `measure/${MODEL}/v1?metric=error_rate`)).status).toBe(200);
}, 120_000);
