/**
 * A long read of the SQLite prediction log does not block inference: statements run in worker
 * threads, so the event loop that serves requests stays free. The control runs the same
 * aggregation on the event loop and shows the monitor would have seen it.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import { SQL } from '../../src/serving/gateway/prediction-log/queries';
import type { Prediction } from '../../src/serving/gateway/prediction-log';
import { MODEL, startGateway, upstream, type TestGateway, type Upstream } from '../helpers/gateway';

const ROWS = 150_000;
let v1: Upstream;
let g: TestGateway;

beforeAll(async () => {
  v1 = await upstream(0.3);
  g = await startGateway();
  await g.admin('PUT', `backends/${MODEL}/v1`, { url: v1.url });
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 } });
  for (let i = 0; i < ROWS; i += 10_000) {
    const rows: Prediction[] = [];
    for (let j = i; j < i + 10_000; j++) {
      const base = { clientRequestId: null, entityKey: `e${j}`, model: MODEL, decision: null, atMs: j };
      rows.push({
        ...base,
        requestId: `r${j}`,
        version: 'v1',
        role: 'primary',
        score: 0.3,
        latencyMs: j % 97,
        status: 200,
      });
      rows.push({
        ...base,
        requestId: `r${j}`,
        version: 'v2',
        role: 'shadow',
        score: 0.6,
        latencyMs: j % 89,
        status: 200,
      });
    }
    g.log.record(rows);
    await g.log.flush();
  }
}, 120_000);

afterAll(async () => {
  await g.close();
  v1.close();
});

test('inference keeps answering quickly while large reads run', async () => {
  const loop = monitorEventLoopDelay({ resolution: 1 });
  await new Promise((r) => setTimeout(r, 20));
  loop.enable();
  await new Promise((r) => setTimeout(r, 20)); // the monitor's timer is running
  const started = performance.now();
  let readsDone = false;
  // The answers are kept as bytes until the monitor stops: parsing 50000 rows here, in the test's
  // client, would block this shared event loop and be blamed on the gateway.
  const bytes = (path: string) => g.admin('GET', path).then(async (r) => Buffer.from(await r.arrayBuffer()));
  const measure = `measure/${MODEL}/v1?metric=latency_p99_ms&from=0&to=${ROWS}`;
  const reads = Promise.all([
    bytes(measure),
    bytes(`pairs/${MODEL}?champion=v1&candidate=v2&from=0&to=${ROWS}`),
    bytes(`pairs/${MODEL}?champion=v1&candidate=v2&from=${ROWS - 20_000}&to=${ROWS}`),
    bytes(measure),
    bytes(measure),
  ]).finally(() => (readsDone = true));
  const latencies: number[] = [];
  for (let i = 0; i < 500 && !readsDone; i++) {
    const t = performance.now();
    expect((await g.invoke(`e${i}`)).status).toBe(200);
    latencies.push(performance.now() - t);
  }
  const answers = await reads;
  const readMs = performance.now() - started;
  loop.disable();
  const [measured, pairs, half] = answers.map((b) => JSON.parse(b.toString('utf8')) as unknown);
  expect(measured).toMatchObject({ requests: ROWS, phase: 'Ok' });
  expect(pairs).toHaveLength(50_000);
  expect(half).toHaveLength(20_000);
  // Requests were served all along, and the event loop never stalled for the reads' duration.
  // (Absolute delays here include this test's own client and a shared machine's noise: the
  // control below shows what a read on the event loop looks like.)
  expect(readMs).toBeGreaterThan(300);
  expect(latencies.length).toBeGreaterThan(10);
  expect(Math.max(...latencies)).toBeLessThan(readMs / 2);
  expect(loop.max / 1e6).toBeLessThan(readMs / 3);
});

test('control: the same aggregation on the event loop blocks it for as long as it runs', async () => {
  const db = new Database(`${g.stateDir}/predictions.db`, { readonly: true });
  const loop = monitorEventLoopDelay({ resolution: 1 });
  loop.enable();
  await new Promise((r) => setTimeout(r, 20)); // the monitor's timer is running
  const t = performance.now();
  // Several runs make the blocked stretch long enough to measure on a busy machine.
  const counts = { model: MODEL, version: 'v1', role: 'primary', from_ms: 0, to_ms: ROWS };
  for (let i = 0; i < 5; i++) db.prepare(SQL.counts).all(counts);
  const blockedMs = performance.now() - t;
  await new Promise((r) => setTimeout(r, 20));
  loop.disable();
  db.close();
  expect(blockedMs).toBeGreaterThan(40);
  expect(loop.max / 1e6).toBeGreaterThan(blockedMs * 0.8);
});
