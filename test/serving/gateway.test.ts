import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { SqlitePredictionLog, type WindowMeasurement } from '../../src/serving/gateway/prediction-log';
import { MODEL, leaseFor, startGateway, upstream, type TestGateway, type Upstream } from '../helpers/gateway';

const HOLDER = 'promotion-fraud/run-1';

let v1: Upstream;
let v2: Upstream;
let g: TestGateway;

/** Splits traffic under a lease (a split route needs one). */
async function split(weights: Record<string, number>, extra: Record<string, unknown> = {}) {
  await g.admin('PUT', `leases/${MODEL}`, leaseFor(HOLDER));
  return g.admin('PUT', `routes/${MODEL}`, { weights, lease: HOLDER, ...extra });
}

beforeEach(async () => {
  v1 = await upstream(0.2);
  v2 = await upstream(0.95);
  g = await startGateway();
  await g.admin('PUT', `backends/${MODEL}/v1`, { url: v1.url });
  await g.admin('PUT', `backends/${MODEL}/v2`, { url: v2.url });
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 } });
});

afterEach(async () => {
  v1.hold = v2.hold = false;
  await g.close();
  v1.close();
  v2.close();
});

test('the admin API needs the bearer token and explains bad routes', async () => {
  expect((await g.admin('GET', 'state', undefined, 'wrong')).status).toBe(401);
  const bad = await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 60, v2: 30 } });
  expect(bad.status).toBe(400);
  expect(await bad.json()).toEqual({ error: `weights for ${MODEL} sum to 90, not 100` });
  const unknown = await g.admin('PUT', `routes/${MODEL}`, { weights: { v9: 100 } });
  expect([unknown.status, await unknown.json()]).toEqual([
    404,
    { error: `unknown version ${MODEL}/v9: no model server registered` },
  ]);
  v2.close();
  const down = await g.admin('PUT', `routes/${MODEL}`, { weights: { v2: 100 } });
  expect(down.status).toBe(503);
  expect(((await down.json()) as { error: string }).error).toMatch(
    /^fraud\/v2 has no healthy model server at http/,
  );
  expect((await g.invoke('e1')).version).toBe('v1');
  const unknownModel = await fetch(`${g.url}/models/nope/invocations`, { method: 'POST', body: '{}' });
  expect([unknownModel.status, await unknownModel.json()]).toEqual([
    404,
    { error: 'unknown model nope: no route' },
  ]);
});

test('assignment is sticky by entity, and a weight increase only moves entities onto the candidate', async () => {
  expect((await split({ v1: 90, v2: 10 })).status).toBe(200);
  const entities = Array.from({ length: 400 }, (_, i) => `entity-${i}`);
  const first = new Map<string, string>();
  for (const e of entities) first.set(e, (await g.invoke(e)).version!);
  for (const e of entities.slice(0, 100)) expect((await g.invoke(e)).version).toBe(first.get(e));
  const onV2 = entities.filter((e) => first.get(e) === 'v2');
  expect(onV2.length).toBeGreaterThan(20);
  expect(onV2.length).toBeLessThan(70);
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 50, v2: 50 }, lease: HOLDER });
  for (const e of onV2) expect((await g.invoke(e)).version).toBe('v2');
});

test('mirroring never holds up the primary response, and a full mirror queue drops and counts', async () => {
  await g.restart({ mirrorQueue: 5, mirrorConcurrency: 4 });
  await split({ v1: 100 }, { shadow: { version: 'v2', sampleRate: 1 } });
  v2.hold = true; // the shadow never answers
  for (let i = 0; i < 20; i++) expect(await g.invoke(`e${i}`)).toMatchObject({ status: 200, version: 'v1' });
  // 4 mirrored calls in flight, 5 waiting, the other 11 dropped.
  expect(v2.received).toBe(4);
  const metrics = await (await fetch(`${g.url}/metrics`)).text();
  expect(metrics).toContain('promote_gateway_shadow_dropped_total{model="fraud",version="v2"} 11');
  expect(metrics).toContain('promote_gateway_shadow_queue_depth 5');
  expect(metrics).toContain(
    'promote_gateway_requests_total{model="fraud",version="v1",role="primary",code="200"} 20',
  );
  v2.hold = false;
  v2.server.closeAllConnections();
});

test('the mirror queue is bounded by bytes as well as by count', async () => {
  await g.restart({ mirrorQueue: 1000, mirrorQueueBytes: 3000, mirrorConcurrency: 4 });
  await split({ v1: 100 }, { shadow: { version: 'v2', sampleRate: 1 } });
  v2.hold = true;
  const big = { dataframe_split: { columns: ['amount', 'note'], data: [[1, 'x'.repeat(900)]] } };
  for (let i = 0; i < 12; i++) expect((await g.invoke(`e${i}`, { body: big })).status).toBe(200);
  // 4 in flight; about 950 bytes each, so 3 fit in 3000 waiting bytes; 5 dropped.
  const metrics = await (await fetch(`${g.url}/metrics`)).text();
  expect(metrics).toContain('promote_gateway_shadow_dropped_total{model="fraud",version="v2"} 5');
  expect(metrics).toMatch(/promote_gateway_shadow_queue_bytes (2[5-9]\d\d)\n/);
  v2.hold = false;
  v2.server.closeAllConnections();
});

test('the gateway makes request ids; primary and shadow rows share it, with the client id beside', async () => {
  await g.admin('PUT', `policies/${MODEL}/v2`, { review: 0.6, block: 0.9 });
  await split({ v1: 100 }, { shadow: { version: 'v2', sampleRate: 1 } });
  const answer = await g.invoke('e42', { headers: { 'x-request-id': 'client-1' } });
  expect(answer.requestId).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
  expect(answer.requestId).not.toBe('client-1');
  const long = await g.invoke('e43', { headers: { 'x-request-id': 'c'.repeat(5000) } });
  await g.gateway.close(); // drains the mirror queue
  const primary = await g.log.window(MODEL, 'v1', 0, Date.now() + 1000, 'primary');
  const shadow = await g.log.window(MODEL, 'v2', 0, Date.now() + 1000, 'shadow');
  const row = { requestId: answer.requestId, clientRequestId: 'client-1', entityKey: 'e42', status: 200 };
  expect(primary[0]).toEqual(expect.objectContaining({ ...row, score: 0.2, decision: 'allow' }));
  expect(shadow[0]).toEqual(expect.objectContaining({ ...row, score: 0.95, decision: 'block' }));
  expect(primary[1]).toMatchObject({ requestId: long.requestId, clientRequestId: 'c'.repeat(200) });
  expect(await g.log.pairs(MODEL, 'v1', 'v2', 0, Date.now() + 1000)).toEqual([
    { champion: 0.2, candidate: 0.95 },
    { champion: 0.2, candidate: 0.95 },
  ]);
});

test('labels join by the gateway request id or entity; they need the ingest token; a bad batch is refused whole', async () => {
  const r1 = (await g.invoke('e1')).requestId!;
  await g.invoke('e2');
  for (const token of ['wrong', 'test-admin-token', '']) {
    const refused = await g.labels([{ requestId: r1, label: 1 }], token);
    expect([refused.status, await refused.json()]).toEqual([
      401,
      { error: 'labels: missing or wrong bearer token (the ingest token)' },
    ]);
  }
  const bad = await g.labels([
    { requestId: r1, label: 1 },
    { requestId: 'x', label: 7 },
  ]);
  expect([bad.status, await bad.json()]).toEqual([400, { error: 'labels[1].label: expected 0 or 1, got 7' }]);
  const unknown = await g.labels([
    { requestId: r1, label: 1 },
    { requestId: 'nope', label: 0 },
  ]);
  expect([unknown.status, await unknown.json()]).toEqual([
    400,
    { error: 'labels[1]: requestId nope matches no logged prediction of fraud; the batch was not applied' },
  ]);
  expect(await g.log.labelled(MODEL, 'v1', 0, Date.now() + 1000)).toEqual([]);
  const both = await g.labels([{ requestId: r1, entityKey: 'e1', label: 1 }]);
  expect(await both.json()).toEqual({ error: 'labels[0]: needs exactly one of requestId or entityKey' });
  const good = await g.labels([
    { requestId: r1, label: 1 },
    { entityKey: 'e2', label: 0 },
  ]);
  expect([good.status, await good.json()]).toEqual([200, { labelled: 2 }]);
  expect((await g.log.labelled(MODEL, 'v1', 0, Date.now() + 1000)).map((r) => r.label).sort()).toEqual([
    0, 1,
  ]);
  const notJson = await fetch(`${g.url}/models/${MODEL}/labels`, {
    method: 'POST',
    headers: { authorization: 'Bearer test-ingest-token' },
    body: '{',
  });
  expect(await notJson.json()).toEqual({ error: 'labels: the body is not valid JSON' });
});

test('injected faults fail a version; routes survive a gateway restart', async () => {
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v2: 100 } });
  await g.admin('PUT', `faults/${MODEL}/v2`, { errorRate: 1 });
  expect(await g.invoke('e1')).toMatchObject({
    status: 503,
    version: 'v2',
    body: JSON.stringify({ error: 'injected fault on fraud/v2' }),
  });
  expect(await (await fetch(`${g.url}/metrics`)).text()).toContain(
    'promote_gateway_errors_total{model="fraud",version="v2",role="primary"} 1',
  );
  await g.admin('DELETE', `faults/${MODEL}/v2`);
  await split({ v1: 70, v2: 30 });
  await g.restart();
  const route = await (await g.admin('GET', `routes/${MODEL}`)).json();
  expect(route).toEqual({
    weights: { v1: 70, v2: 30 },
    shadow: null,
    stickyKey: 'header:x-entity-id',
    sliceKeys: [],
  });
  expect((await g.invoke('e1')).status).toBe(200);
  const busy = await g.admin('DELETE', `backends/${MODEL}/v2`);
  expect([busy.status, await busy.json()]).toEqual([
    409,
    { error: 'fraud/v2 still receives traffic; route it away first', code: 'conflict' },
  ]);
});

test('read endpoints: aggregated measurements with raw counts, shadow pairs, labelled rows, features', async () => {
  await split({ v1: 100 }, { shadow: { version: 'v2', sampleRate: 1 } });
  const from = Date.now() - 1;
  const ids: string[] = [];
  for (let i = 0; i < 4; i++) ids.push((await g.invoke(`e${i}`)).requestId!);
  await g.admin('PUT', `faults/${MODEL}/v1`, { errorRate: 1 });
  await g.invoke('e9');
  await new Promise((r) => setTimeout(r, 100)); // mirrored calls finish
  const to = Date.now() + 1;
  const get = async (path: string) => (await g.admin('GET', path)).json();
  const errorRate = (await get(
    `measure/${MODEL}/v1?metric=error_rate&from=${from}&to=${to}`,
  )) as WindowMeasurement;
  expect(errorRate).toMatchObject({
    metric: 'error_rate',
    version: 'v1',
    value: 0.2,
    samples: 5,
    events: 1,
    phase: 'Ok',
    requests: 5,
    errors: 1,
    fromMs: from,
    toMs: to,
  });
  expect(errorRate.latency.counts.reduce((a, b) => a + b, 0)).toBe(5);
  expect(errorRate.latency.counts).toHaveLength(errorRate.latency.boundsMs.length + 1);
  const p99 = (await get(
    `measure/${MODEL}/v1?metric=latency_p99_ms&from=${from}&to=${to}`,
  )) as WindowMeasurement;
  expect(p99).toMatchObject({ samples: 5, phase: 'Ok', value: expect.any(Number) });
  expect(p99.value).toBeLessThanOrEqual(p99.latency.maxMs!);
  expect(await get(`measure/${MODEL}/v1?metric=cpu&from=${from}&to=${to}`)).toMatchObject({
    phase: 'Error',
    error: 'the gateway does not measure cpu',
  });
  expect(await get(`pairs/${MODEL}?champion=v1&candidate=v2&from=${from}&to=${to}`)).toEqual(
    Array.from({ length: 4 }, () => ({ champion: 0.2, candidate: 0.95 })),
  );
  expect(await get(`pairs/${MODEL}?champion=v1&candidate=v2&from=${from}&to=${to}&limit=3`)).toHaveLength(3);
  expect(await get(`features/${MODEL}`)).toEqual([{ name: 'amount', type: 'double' }]);
  await g.labels([{ requestId: ids[0], label: 1 }]);
  expect(await get(`labelled/${MODEL}/v1?from=${from}&to=${Date.now() + 1}`)).toEqual([
    { version: 'v1', score: 0.2, label: 1, atMs: expect.any(Number), labelAtMs: expect.any(Number) },
  ]);
  expect(await get(`measure/${MODEL}/v1?from=abc`)).toEqual({
    error: 'from and to must be epoch milliseconds',
  });
  expect(await get(`pairs/${MODEL}?champion=v1&candidate=v2&limit=0`)).toEqual({
    error: 'limit must be a whole number 1..50000',
  });
});

test('the sticky key can come from a field of the request body', async () => {
  await split({ v1: 50, v2: 50 }, { stickyKey: 'field:customer_id' });
  const call = (customer: number) =>
    fetch(`${g.url}/models/${MODEL}/invocations`, {
      method: 'POST',
      body: JSON.stringify({
        dataframe_split: { columns: ['customer_id', 'amount'], data: [[customer, 10]] },
      }),
    }).then((r) => r.headers.get('x-promote-version'));
  const first = await Promise.all(Array.from({ length: 40 }, (_, i) => call(i)));
  const again = await Promise.all(Array.from({ length: 40 }, (_, i) => call(i)));
  expect(again).toEqual(first);
  expect(new Set(first)).toEqual(new Set(['v1', 'v2']));
  const records = await fetch(`${g.url}/models/${MODEL}/invocations`, {
    method: 'POST',
    body: JSON.stringify({ dataframe_records: [{ customer_id: 7, amount: 1 }] }),
  });
  expect(records.headers.get('x-promote-version')).toBe(first[7]);
});

test('predictions the log cannot take are dropped and counted in /metrics, never failing a request', async () => {
  const small = new SqlitePredictionLog(join(mkdtempSync(join(tmpdir(), 'promote-gw-')), 'p.db'), {
    maxBuffered: 3,
    flushEveryMs: 60_000,
  });
  const other = await startGateway({ log: small });
  try {
    await other.admin('PUT', `backends/${MODEL}/v1`, { url: v1.url });
    await other.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 } });
    for (let i = 0; i < 10; i++) expect((await other.invoke(`e${i}`)).status).toBe(200);
    const metrics = await (await fetch(`${other.url}/metrics`)).text();
    expect(metrics).toContain('promote_gateway_prediction_log_dropped_total 7');
    expect(metrics).toContain('promote_gateway_prediction_log_buffered 3');
  } finally {
    await other.close();
    await small.close();
  }
});
