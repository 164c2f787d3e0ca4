import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Gateway } from '../../src/serving/gateway/server';
import { SqlitePredictionLog } from '../../src/serving/gateway/prediction-log';

const TOKEN = 'test-token';
const MODEL = 'fraud';

/** A fixture upstream speaking MLflow's scoring protocol; `hold` keeps /invocations from answering. */
interface Upstream {
  url: string;
  received: number;
  hold: boolean;
  server: Server;
}

async function upstream(score: number): Promise<Upstream> {
  const u = { url: '', received: 0, hold: false } as Upstream;
  u.server = createServer((req, res) => {
    if (req.url === '/ping') return void res.end('ok');
    u.received++;
    if (u.hold) return; // never answers
    req.resume();
    req.on('end', () => res.end(JSON.stringify({ predictions: [score] })));
  });
  await new Promise<void>((r) => u.server.listen(0, '127.0.0.1', r));
  const address = u.server.address();
  u.url = `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`;
  return u;
}

let v1: Upstream;
let v2: Upstream;
let stateDir: string;
let log: SqlitePredictionLog;
let gateway: Gateway;
let url: string;

async function startGateway(opts: { mirrorQueue?: number } = {}): Promise<void> {
  gateway = new Gateway({ stateDir, log, adminToken: TOKEN, logger: pino({ level: 'silent' }), ...opts });
  ({ url } = await gateway.listen(0));
}

function admin(method: string, path: string, body?: unknown, token = TOKEN) {
  return fetch(`${url}/admin/${path}`, {
    method,
    headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
}

async function invoke(entity: string, requestId?: string) {
  const response = await fetch(`${url}/models/${MODEL}/invocations`, {
    method: 'POST',
    headers: {
      'content-type': 'application/json',
      'x-entity-id': entity,
      ...(requestId ? { 'x-request-id': requestId } : {}),
    },
    body: JSON.stringify({ dataframe_split: { columns: ['amount'], data: [[12.5]] } }),
  });
  return {
    status: response.status,
    version: response.headers.get('x-promote-version'),
    body: await response.text(),
  };
}

beforeEach(async () => {
  v1 = await upstream(0.2);
  v2 = await upstream(0.95);
  stateDir = mkdtempSync(join(tmpdir(), 'promote-gw-'));
  log = new SqlitePredictionLog(join(stateDir, 'predictions.db'));
  await startGateway();
  await admin('PUT', `backends/${MODEL}/v1`, { url: v1.url });
  await admin('PUT', `backends/${MODEL}/v2`, { url: v2.url });
  await admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 } });
});

afterEach(async () => {
  v1.hold = v2.hold = false;
  await gateway.close();
  await log.close();
  v1.server.closeAllConnections();
  v2.server.closeAllConnections();
  v1.server.close();
  v2.server.close();
});

test('the admin API needs the bearer token and explains bad routes', async () => {
  expect((await admin('GET', 'state', undefined, 'wrong')).status).toBe(401);
  const bad = await admin('PUT', `routes/${MODEL}`, { weights: { v1: 60, v2: 30 } });
  expect(bad.status).toBe(400);
  expect(await bad.json()).toEqual({ error: `weights for ${MODEL} sum to 90, not 100` });
  const unknown = await admin('PUT', `routes/${MODEL}`, { weights: { v1: 50, v9: 50 } });
  expect([unknown.status, await unknown.json()]).toEqual([
    404,
    { error: `unknown version ${MODEL}/v9: no model server registered` },
  ]);
  v2.server.close();
  v2.server.closeAllConnections();
  const down = await admin('PUT', `routes/${MODEL}`, { weights: { v1: 50, v2: 50 } });
  expect(down.status).toBe(503);
  expect(((await down.json()) as { error: string }).error).toMatch(
    /^fraud\/v2 has no healthy model server at http/,
  );
  expect((await invoke('e1')).version).toBe('v1');
  const unknownModel = await fetch(`${url}/models/nope/invocations`, { method: 'POST', body: '{}' });
  expect([unknownModel.status, await unknownModel.json()]).toEqual([
    404,
    { error: 'unknown model nope: no route' },
  ]);
});

test('assignment is sticky by entity, and a weight increase only moves entities onto the candidate', async () => {
  await admin('PUT', `routes/${MODEL}`, { weights: { v1: 90, v2: 10 } });
  const entities = Array.from({ length: 400 }, (_, i) => `entity-${i}`);
  const first = new Map<string, string>();
  for (const e of entities) first.set(e, (await invoke(e)).version!);
  for (const e of entities.slice(0, 100)) expect((await invoke(e)).version).toBe(first.get(e));
  const onV2 = entities.filter((e) => first.get(e) === 'v2');
  expect(onV2.length).toBeGreaterThan(20);
  expect(onV2.length).toBeLessThan(70);
  await admin('PUT', `routes/${MODEL}`, { weights: { v1: 50, v2: 50 } });
  for (const e of onV2) expect((await invoke(e)).version).toBe('v2');
});

test('mirroring never holds up the primary response, and a full mirror queue drops and counts', async () => {
  await gateway.close();
  await startGateway({ mirrorQueue: 5 });
  await admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 }, shadow: { version: 'v2', sampleRate: 1 } });
  v2.hold = true; // the shadow never answers
  for (let i = 0; i < 20; i++) expect(await invoke(`e${i}`)).toMatchObject({ status: 200, version: 'v1' });
  // 4 mirrored calls in flight, 5 waiting, the other 11 dropped.
  expect(v2.received).toBe(4);
  const metrics = await (await fetch(`${url}/metrics`)).text();
  expect(metrics).toContain('promote_gateway_shadow_dropped_total{model="fraud",version="v2"} 11');
  expect(metrics).toContain(
    'promote_gateway_requests_total{model="fraud",version="v1",role="primary",code="200"} 20',
  );
  v2.hold = false;
  v2.server.closeAllConnections();
});

test('primary and shadow predictions are logged with the same request id and their decisions', async () => {
  await admin('PUT', `policies/${MODEL}/v2`, { review: 0.6, block: 0.9 });
  await admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 }, shadow: { version: 'v2', sampleRate: 1 } });
  await invoke('e42', 'req-1');
  await gateway.close(); // drains the mirror queue
  const primary = await log.window(MODEL, 'v1', 0, Date.now() + 1000, 'primary');
  const shadow = await log.window(MODEL, 'v2', 0, Date.now() + 1000, 'shadow');
  expect(primary).toEqual([
    expect.objectContaining({
      requestId: 'req-1',
      entityKey: 'e42',
      score: 0.2,
      decision: 'allow',
      status: 200,
    }),
  ]);
  expect(shadow).toEqual([
    expect.objectContaining({
      requestId: 'req-1',
      entityKey: 'e42',
      score: 0.95,
      decision: 'block',
      status: 200,
    }),
  ]);
  expect(await log.pairs(MODEL, 'v1', 'v2', 0, Date.now() + 1000)).toEqual([
    { champion: 0.2, candidate: 0.95 },
  ]);
});

test('labels join by request id or entity; a malformed batch is refused whole', async () => {
  await invoke('e1', 'r1');
  await invoke('e2', 'r2');
  const post = (labels: unknown) =>
    fetch(`${url}/models/${MODEL}/labels`, { method: 'POST', body: JSON.stringify({ labels }) });
  const bad = await post([
    { requestId: 'r1', label: 1 },
    { requestId: 'r2', label: 7 },
  ]);
  expect([bad.status, await bad.json()]).toEqual([400, { error: 'labels[1].label: expected 0 or 1, got 7' }]);
  const unknown = await post([
    { requestId: 'r1', label: 1 },
    { requestId: 'nope', label: 0 },
  ]);
  expect([unknown.status, await unknown.json()]).toEqual([
    400,
    { error: 'labels[1]: requestId nope matches no logged prediction of fraud; the batch was not applied' },
  ]);
  expect(await log.labelled(MODEL, 'v1', 0, Date.now() + 1000)).toEqual([]);
  const both = await post([{ requestId: 'r1', entityKey: 'e1', label: 1 }]);
  expect(await both.json()).toEqual({ error: 'labels[0]: needs exactly one of requestId or entityKey' });
  const good = await post([
    { requestId: 'r1', label: 1 },
    { entityKey: 'e2', label: 0 },
  ]);
  expect([good.status, await good.json()]).toEqual([200, { labelled: 2 }]);
  expect((await log.labelled(MODEL, 'v1', 0, Date.now() + 1000)).map((r) => r.label).sort()).toEqual([0, 1]);
  const notJson = await fetch(`${url}/models/${MODEL}/labels`, { method: 'POST', body: '{' });
  expect(await notJson.json()).toEqual({ error: 'labels: the body is not valid JSON' });
});

test('injected faults fail a version; routes survive a gateway restart', async () => {
  await admin('PUT', `routes/${MODEL}`, { weights: { v2: 100 } });
  await admin('PUT', `faults/${MODEL}/v2`, { errorRate: 1 });
  expect(await invoke('e1')).toMatchObject({
    status: 503,
    version: 'v2',
    body: JSON.stringify({ error: 'injected fault on fraud/v2' }),
  });
  expect(await (await fetch(`${url}/metrics`)).text()).toContain(
    'promote_gateway_errors_total{model="fraud",version="v2",role="primary"} 1',
  );
  await admin('DELETE', `faults/${MODEL}/v2`);
  await admin('PUT', `routes/${MODEL}`, { weights: { v1: 70, v2: 30 } });
  await gateway.close();
  await startGateway();
  const route = await (await admin('GET', `routes/${MODEL}`)).json();
  expect(route).toEqual({ weights: { v1: 70, v2: 30 }, shadow: null, stickyKey: 'header:x-entity-id' });
  expect((await invoke('e1')).status).toBe(200);
  const busy = await admin('DELETE', `backends/${MODEL}/v2`);
  expect([busy.status, await busy.json()]).toEqual([
    409,
    { error: 'fraud/v2 still receives traffic; route it away first' },
  ]);
});

test('read endpoints: windowed measurements, shadow pairs, labelled rows and the features traffic carries', async () => {
  await admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 }, shadow: { version: 'v2', sampleRate: 1 } });
  const from = Date.now() - 1;
  for (let i = 0; i < 4; i++) await invoke(`e${i}`, `q${i}`);
  await admin('PUT', `faults/${MODEL}/v1`, { errorRate: 1 });
  await invoke('e9', 'q9');
  await new Promise((r) => setTimeout(r, 100)); // mirrored calls finish
  const to = Date.now() + 1;
  const get = async (path: string) => (await admin('GET', path)).json();
  expect(await get(`measure/${MODEL}/v1?metric=error_rate&from=${from}&to=${to}`)).toMatchObject({
    metric: 'error_rate',
    version: 'v1',
    value: 0.2,
    samples: 5,
    events: 1,
    phase: 'Ok',
  });
  expect(await get(`measure/${MODEL}/v1?metric=latency_p99_ms&from=${from}&to=${to}`)).toMatchObject({
    samples: 5,
    phase: 'Ok',
    value: expect.any(Number),
  });
  expect(await get(`measure/${MODEL}/v1?metric=cpu&from=${from}&to=${to}`)).toMatchObject({
    phase: 'Error',
    error: 'the gateway does not measure cpu',
  });
  expect(await get(`pairs/${MODEL}?champion=v1&candidate=v2&from=${from}&to=${to}`)).toEqual(
    Array.from({ length: 4 }, () => ({ champion: 0.2, candidate: 0.95 })),
  );
  expect(await get(`features/${MODEL}`)).toEqual([{ name: 'amount', type: 'double' }]);
  await fetch(`${url}/models/${MODEL}/labels`, {
    method: 'POST',
    body: JSON.stringify({ labels: [{ requestId: 'q0', label: 1 }] }),
  });
  expect(await get(`labelled/${MODEL}/v1?from=${from}&to=${Date.now() + 1}`)).toEqual([
    { version: 'v1', score: 0.2, label: 1 },
  ]);
  expect(await get(`measure/${MODEL}/v1?from=abc`)).toEqual({
    error: 'from and to must be epoch milliseconds',
  });
});

test('the sticky key can come from a field of the request body', async () => {
  await admin('PUT', `routes/${MODEL}`, { weights: { v1: 50, v2: 50 }, stickyKey: 'field:customer_id' });
  const call = (customer: number) =>
    fetch(`${url}/models/${MODEL}/invocations`, {
      method: 'POST',
      body: JSON.stringify({
        dataframe_split: { columns: ['customer_id', 'amount'], data: [[customer, 10]] },
      }),
    }).then((r) => r.headers.get('x-promote-version'));
  const first = await Promise.all(Array.from({ length: 40 }, (_, i) => call(i)));
  const again = await Promise.all(Array.from({ length: 40 }, (_, i) => call(i)));
  expect(again).toEqual(first);
  expect(new Set(first)).toEqual(new Set(['v1', 'v2']));
  const records = await fetch(`${url}/models/${MODEL}/invocations`, {
    method: 'POST',
    body: JSON.stringify({ dataframe_records: [{ customer_id: 7, amount: 1 }] }),
  });
  expect(records.headers.get('x-promote-version')).toBe(first[7]);
});
