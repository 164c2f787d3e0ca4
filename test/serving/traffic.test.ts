/** The traffic generator labels requests by the gateway's request id, through the ingest token. */
import pino from 'pino';
import { TrafficGenerator } from '../../src/serving/traffic';
import {
  INGEST_TOKEN,
  MODEL,
  startGateway,
  upstream,
  type TestGateway,
  type Upstream,
} from '../helpers/gateway';

let v1: Upstream;
let g: TestGateway;

const holdout = {
  columns: ['amount', 'age', 'entity_id', 'label'],
  rows: Array.from({ length: 20 }, (_, i) => ({
    amount: String(i * 3.5),
    age: String(20 + i),
    entity_id: `c${i}`,
    label: String(i % 2),
  })),
};

beforeEach(async () => {
  v1 = await upstream(0.4);
  g = await startGateway();
  await g.admin('PUT', `backends/${MODEL}/v1`, { url: v1.url });
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 } });
});

afterEach(async () => {
  await g.close();
  v1.close();
});

async function run(ingestToken: string | undefined) {
  const traffic = new TrafficGenerator({
    gatewayUrl: g.url,
    model: MODEL,
    holdout,
    ratePerSec: 40,
    labelDelayMs: 0,
    ingestToken,
    logger: pino({ level: 'silent' }),
  }).start(50);
  for (let i = 0; i < 60 && traffic.counts.labelled + traffic.counts.labelsRefused < 10; i++)
    await new Promise((r) => setTimeout(r, 50));
  traffic.stop();
  return traffic.counts;
}

test('labels join the logged predictions by the id the gateway gave each request', async () => {
  const counts = await run(INGEST_TOKEN);
  expect(counts.labelled).toBeGreaterThanOrEqual(10);
  expect(counts.labelsRefused).toBe(0);
  const labelled = await g.log.labelled(MODEL, 'v1', 0, Date.now() + 1000);
  expect(labelled.length).toBe(counts.labelled);
  // The generator sent no request ids of its own: the rows carry only the gateway's.
  const rows = await g.log.window(MODEL, 'v1', 0, Date.now() + 1000);
  expect(rows.every((r) => /^c\d+$/.test(r.entityKey ?? '') && r.clientRequestId === null)).toBe(true);
});

test('without the ingest token the labels are refused, and counted as such', async () => {
  const counts = await run(undefined);
  expect(counts.labelled).toBe(0);
  expect(counts.labelsRefused).toBeGreaterThanOrEqual(10);
  expect(counts.ok).toBeGreaterThan(0);
});
