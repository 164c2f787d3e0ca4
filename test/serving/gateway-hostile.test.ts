/**
 * What an attacker would send to the gateway. Every answer must be a 4xx JSON error (or a normal
 * answer), the process keeps serving, and nothing the client names reaches Object.prototype.
 */
import { connect } from 'node:net';
import pino from 'pino';
import {
  ADMIN_TOKEN,
  INGEST_TOKEN,
  MODEL,
  leaseFor,
  parseRaw,
  rawRequest,
  startGateway,
  upstream,
  type TestGateway,
  type Upstream,
  doc,
} from '../helpers/gateway';
import { tokenMatches } from '../../src/serving/gateway/http';

let v1: Upstream;
let v2: Upstream;
let g: TestGateway;

const host = () => new URL(g.url).host;
const rejected = async (code: string) =>
  Number(
    new RegExp(`promote_gateway_rejected_requests_total\\{code="${code}"\\} (\\d+)`).exec(
      await (await fetch(`${g.url}/metrics`)).text(),
    )?.[1] ?? 0,
  );
let logged: { level: number }[] = [];
const errorsLogged = () => Promise.resolve(logged.filter((l) => l.level >= 50).length);
const raw = (text: string) => rawRequest(g.url, text).then(parseRaw);
const post = (path: string, body: string, headers: Record<string, string> = {}) =>
  raw(
    `POST ${path} HTTP/1.1\r\nHost: ${host()}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n${Object.entries(
      headers,
    )
      .map(([k, v]) => `${k}: ${v}\r\n`)
      .join('')}\r\n${body}`,
  );

async function stillServing(): Promise<void> {
  expect(await (await fetch(`${g.url}/health`)).json()).toEqual({ ok: true });
  expect(await g.invoke('e-check')).toMatchObject({ status: 200, version: 'v1' });
}

function prototypeUntouched(): void {
  for (const key of ['method', 'polluted', 'url', 'amount'])
    expect(Object.prototype.hasOwnProperty.call(Object.prototype, key)).toBe(false);
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
}

beforeEach(async () => {
  v1 = await upstream(0.2);
  v2 = await upstream(0.95);
  logged = [];
  const logger = pino(
    { level: 'info' },
    { write: (line: string) => logged.push(JSON.parse(line) as { level: number }) },
  );
  g = await startGateway({ requestTimeoutMs: 1500, headersTimeoutMs: 1000, logger });
  await g.admin('PUT', `backends/${MODEL}/v1`, { url: v1.url });
  await g.admin('PUT', `backends/${MODEL}/v2`, { url: v2.url });
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 } });
});

afterEach(async () => {
  prototypeUntouched();
  await g.close();
  v1.close();
  v2.close();
});

describe('the issue reproductions', () => {
  test('a bad percent-encoding in the model name is a 400, not a crash (POST /models/%E0%A4%A/invocations)', async () => {
    const answer = await post('/models/%E0%A4%A/invocations', '{}');
    expect(answer.status).toBe(400);
    expect(answer.body).toEqual({ error: 'path segment 2 ("%E0%A4%A") is not valid percent-encoding' });
    await stillServing();
  });

  test('__proto__ as a model with columns method and polluted writes nothing to Object.prototype; routes still change', async () => {
    const body = JSON.stringify({ dataframe_split: { columns: ['method', 'polluted'], data: [['x', 'y']] } });
    const answer = await post('/models/__proto__/invocations', body);
    expect(answer.status).toBe(400);
    expect(answer.body).toEqual({
      error: `model "__proto__" is not a valid name (letters, digits, '.', '_', '-', starting with a letter or digit, at most 100 characters)`,
    });
    prototypeUntouched();
    // A rollback can still move traffic: the route change checks the servers and succeeds.
    await g.admin('PUT', `leases/${MODEL}`, leaseFor('p/1'));
    const split = await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 50, v2: 50 }, lease: 'p/1' });
    expect(split.status).toBe(200);
    const back = await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 }, lease: 'p/1' });
    expect([back.status, (await doc(back)).weights]).toEqual([200, { v1: 100 }]);
    await stillServing();
  });
});

describe('names from input', () => {
  test.each(['constructor', 'toString', 'hasOwnProperty', 'valueOf'])(
    'a model named %s is an unknown model (404), for invocations and labels',
    async (name) => {
      const answer = await post(`/models/${name}/invocations`, '{}');
      expect([answer.status, answer.body]).toEqual([404, { error: `unknown model ${name}: no route` }]);
      const labels = await post(`/models/${name}/labels`, '{"labels":[]}', {
        Authorization: `Bearer ${INGEST_TOKEN}`,
      });
      expect(labels.status).toBe(404);
    },
  );

  test.each(['__proto__', '.hidden', '-x', 'a%2Fb', 'x'.repeat(101), '%00', 'caf%C3%A9', '%20'])(
    'a model named %s is refused with a 400 that says why',
    async (name) => {
      const answer = await post(`/models/${name}/invocations`, '{}');
      expect(answer.status).toBe(400);
      expect((answer.body as { error: string }).error).toMatch(
        /is not a valid name|not valid percent-encoding/,
      );
    },
  );

  test('a model name with a slash is another path (404), never a model', async () => {
    const answer = await post('/models/a/b/invocations', '{}');
    expect([answer.status, answer.body]).toEqual([
      404,
      { error: 'no such endpoint: "POST" "/models/a/b/invocations"' },
    ]);
  });

  test('versions named constructor and toString route and log like any other', async () => {
    await g.admin('PUT', `backends/${MODEL}/constructor`, { url: v1.url });
    await g.admin('PUT', `backends/${MODEL}/toString`, { url: v2.url });
    await g.admin('PUT', `leases/${MODEL}`, {
      holder: 'p/2',
      champion: 'constructor',
      candidate: 'toString',
      ttlMs: 60_000,
    });
    const route = await g.admin('PUT', `routes/${MODEL}`, {
      weights: { constructor: 50, toString: 50 },
      lease: 'p/2',
    });
    expect(route.status).toBe(200);
    const seen = new Set<string>();
    for (let i = 0; i < 30; i++) seen.add((await g.invoke(`e${i}`)).version!);
    expect(seen).toEqual(new Set(['constructor', 'toString']));
    const state = await doc(g.admin('GET', 'state'));
    expect(state.backends?.[MODEL]).toEqual({
      v1: v1.url,
      v2: v2.url,
      constructor: v1.url,
      toString: v2.url,
    });
  });

  test('__proto__ as a version (weights, shadow, backends, lease) is refused', async () => {
    const weights = await fetch(`${g.url}/admin/routes/${MODEL}`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${ADMIN_TOKEN}` },
      body: '{"weights":{"__proto__":100}}',
    });
    expect(weights.status).toBe(400);
    expect((await doc(weights)).error).toMatch(/"__proto__" is not a version name/);
    const shadow = await g.admin('PUT', `routes/${MODEL}`, {
      weights: { v1: 100 },
      shadow: { version: '__proto__' },
    });
    expect(shadow.status).toBe(400);
    expect((await g.admin('PUT', `backends/${MODEL}/__proto__`, { url: v1.url })).status).toBe(400);
    const lease = await g.admin('PUT', `leases/${MODEL}`, {
      holder: 'p',
      champion: '__proto__',
      candidate: 'v2',
      ttlMs: 5000,
    });
    expect([lease.status, await lease.json()]).toEqual([
      400,
      { error: 'lease.champion: expected a version (letters, digits and . _ -, at most 100)' },
    ]);
  });

  test('columns named __proto__, constructor and toString are recorded as features, safely and bounded', async () => {
    const columns = ['__proto__', 'constructor', 'toString', 'method', 'polluted', 'y'.repeat(201)];
    const body = { dataframe_split: { columns, data: [[1, 2.5, true, 'a', 'b', 3]] } };
    expect((await g.invoke('e1', { body })).status).toBe(200);
    const many = {
      dataframe_split: { columns: Array.from({ length: 3000 }, (_, i) => `c${i}`), data: [[]] },
    };
    expect((await g.invoke('e2', { body: many })).status).toBe(200);
    const features = (await (await g.admin('GET', `features/${MODEL}`)).json()) as {
      name: string;
      type: string;
    }[];
    expect(features.slice(0, 5)).toEqual([
      { name: '__proto__', type: 'long' },
      { name: 'constructor', type: 'double' },
      { name: 'toString', type: 'boolean' },
      { name: 'method', type: 'string' },
      { name: 'polluted', type: 'string' },
    ]);
    expect(features).toHaveLength(1000);
    expect(features.some((f) => f.name.length > 200)).toBe(false);
  });

  test('a sticky key field named __proto__ or constructor reads only own properties', async () => {
    await g.admin('PUT', `leases/${MODEL}`, leaseFor('p/3'));
    await g.admin('PUT', `routes/${MODEL}`, {
      weights: { v1: 50, v2: 50 },
      lease: 'p/3',
      stickyKey: 'field:constructor',
    });
    const body = { dataframe_records: [{ amount: 1 }] };
    const versions = new Set<string>();
    for (let i = 0; i < 20; i++) versions.add((await g.invoke(`e${i}`, { body })).version!);
    // No own field: each request falls back to its own id, so both versions are seen.
    expect(versions.size).toBe(2);
  });
});

describe('malformed HTTP on a raw socket', () => {
  test.each([
    ['a garbage request line', 'GARBAGE\r\n\r\n'],
    ['a bad method token', 'G@T /health HTTP/1.1\r\nHost: x\r\n\r\n'],
    ['a control character in a header value', 'GET /health HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n'],
    ['a header without a colon', 'GET /health HTTP/1.1\r\nHost: x\r\nnocolon\r\n\r\n'],
    [
      'two different content lengths',
      'POST /models/fraud/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}',
    ],
    [
      'a bad chunk size',
      'POST /models/fraud/invocations HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n{}\r\n0\r\n\r\n',
    ],
    ['a space in the target', 'GET /he alth HTTP/1.1\r\nHost: x\r\n\r\n'],
  ])('%s gets a 400 JSON answer', async (_what, bytes) => {
    const answer = await raw(bytes);
    expect(answer.status).toBe(400);
    expect(answer.headers).toMatch(/content-type: application\/json/i);
    expect((answer.body as { error: string }).error).toMatch(/^malformed or incomplete HTTP request/);
    await stillServing();
  });

  test('headers over the size limit get a 431 JSON answer', async () => {
    const answer = await raw(`GET /health HTTP/1.1\r\nHost: x\r\nX-Big: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(answer.status).toBe(431);
    await stillServing();
  });

  test.each([
    ['an absolute-form target', 'GET http://evil.example/health HTTP/1.1'],
    ['the asterisk target', 'OPTIONS * HTTP/1.1'],
  ])('%s is a 400', async (_what, line) => {
    const answer = await raw(`${line}\r\nHost: x\r\nConnection: close\r\n\r\n`);
    expect([answer.status, answer.body]).toEqual([
      400,
      { error: 'the request target must be a path starting with /' },
    ]);
  });

  test('bad percent-encodings anywhere in the path, and odd query strings', async () => {
    for (const path of ['/%', '/models/%ZZ/invocations', '/admin/%C0%80', '/health/%FF'])
      expect((await raw(`GET ${path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)).status).toBe(400);
    const measure = await raw(
      `GET /admin/measure/fraud/v1?metric=%E0%A4%A&from=%ZZ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer ${ADMIN_TOKEN}\r\nConnection: close\r\n\r\n`,
    );
    expect([measure.status, measure.body]).toEqual([
      400,
      { error: 'from and to must be epoch milliseconds' },
    ]);
    await stillServing();
  });

  test('methods an endpoint does not take are a 405 naming the allowed ones', async () => {
    const get = await fetch(`${g.url}/models/${MODEL}/invocations`);
    expect([get.status, get.headers.get('allow'), await get.json()]).toEqual([
      405,
      'POST',
      { error: '"GET" is not allowed on "/models/fraud/invocations" (allowed: POST)' },
    ]);
    expect((await fetch(`${g.url}/health`, { method: 'DELETE' })).status).toBe(405);
    expect((await raw(`BREW /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n`)).status).toBe(400);
    expect((await g.admin('PATCH', `routes/${MODEL}`, {})).status).toBe(405);
    expect((await g.admin('POST', 'state')).status).toBe(405);
    expect((await g.admin('GET', 'nothing/here')).status).toBe(404);
  });
});

describe('bodies', () => {
  test('an oversize body is a 413 as soon as its length is known, declared or streamed', async () => {
    const declared = await raw(
      `POST /models/fraud/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 5000000\r\n\r\n{"a":`,
    );
    expect([declared.status, declared.body]).toEqual([
      413,
      { error: 'the request body is over 1048576 bytes' },
    ]);
    const streamed = await fetch(`${g.url}/models/${MODEL}/invocations`, {
      method: 'POST',
      body: new ReadableStream({
        start(c) {
          for (let i = 0; i < 40; i++) c.enqueue(new Uint8Array(64 * 1024).fill(32));
          c.close();
        },
      }),
      duplex: 'half',
    }).catch((err: Error) => err);
    // The gateway answers 413 and closes; a client still sending may see the close instead.
    if (streamed instanceof Response) expect(streamed.status).toBe(413);
    await stillServing();
  });

  test.each([
    ['not JSON', '{', 'invocation: the body is not valid JSON'],
    ['empty', '', 'invocation: the body is not valid JSON'],
    [
      'invalid UTF-8',
      Buffer.from([0x7b, 0xff, 0xfe, 0x7d]).toString('latin1'),
      'invocation: the body is not valid JSON',
    ],
  ])('a body that is %s is a 400', async (_what, body, error) => {
    const answer = await post('/models/fraud/invocations', body);
    expect([answer.status, answer.body]).toEqual([400, { error }]);
  });

  test('deeply nested JSON neither crashes nor answers 5xx', async () => {
    const deep = `${'['.repeat(200_000)}${']'.repeat(200_000)}`;
    const answer = await post('/models/fraud/invocations', deep);
    expect(answer.status).toBeLessThan(500);
    await stillServing();
  });

  test('a slow body is cut off with a 408 while other clients are served', async () => {
    const started = Date.now();
    const slow = rawRequest(
      g.url,
      `POST /models/fraud/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n{"a"`,
      8000,
    ).then(parseRaw);
    await stillServing();
    const answer = await slow;
    expect(answer.status).toBe(408);
    expect(Date.now() - started).toBeLessThan(6000);
  });

  test('slow headers are cut off too', async () => {
    const answer = await rawRequest(g.url, `GET /health HTTP/1.1\r\nHost: x\r\nX-Slow: `, 8000).then(
      parseRaw,
    );
    expect(answer.status).toBe(408);
  });

  test('a client that hangs up mid-body is counted as refused, not logged as a gateway error', async () => {
    const before = await rejected('400');
    const { hostname, port } = new URL(g.url);
    await new Promise<void>((resolve) => {
      const socket = connect(Number(port), hostname, () => {
        socket.write(
          `POST /models/${MODEL}/invocations HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{"a":`,
        );
        setTimeout(() => {
          socket.destroy();
          resolve();
        }, 100);
      });
    });
    for (let i = 0; i < 40 && (await rejected('400')) === before; i++)
      await new Promise((r) => setTimeout(r, 25));
    expect(await rejected('400')).toBe(before + 1);
    expect(await errorsLogged()).toBe(0);
    await stillServing();
  });

  test('label batches over the item or byte bound are refused', async () => {
    const many = await g.labels(Array.from({ length: 10_001 }, (_, i) => ({ requestId: `r${i}`, label: 1 })));
    expect([many.status, await many.json()]).toEqual([
      400,
      { error: 'labels: 10001 items, at most 10000 per batch' },
    ]);
    const huge = await g.labels([{ requestId: 'r'.repeat(2_000_000), label: 1 }]);
    expect(huge.status).toBe(413);
    const notArray = await g.labels({ requestId: 'x', label: 1 });
    expect(await notArray.json()).toEqual({ error: 'labels: expected an array' });
    await stillServing();
  });
});

describe('a stalled model server', () => {
  test('upstream calls time out, and requests waiting on it are bounded', async () => {
    await g.restart({ upstreamTimeoutMs: 1500, maxInFlight: 3 });
    v1.hold = true;
    const waiting = Array.from({ length: 3 }, (_, i) => g.invoke(`held-${i}`));
    await new Promise((r) => setTimeout(r, 200));
    const refused = await fetch(`${g.url}/models/${MODEL}/invocations`, { method: 'POST', body: '{}' });
    expect([refused.status, refused.headers.get('retry-after'), await refused.json()]).toEqual([
      503,
      '1',
      { error: 'the gateway has 3 requests waiting on model servers; try again' },
    ]);
    for (const answer of await Promise.all(waiting))
      expect(answer).toMatchObject({
        status: 504,
        body: JSON.stringify({ error: 'fraud/v1 did not answer within 1500ms' }),
      });
    v1.hold = false;
    v1.server.closeAllConnections();
    await stillServing();
  });
});

describe('secrets', () => {
  test('the admin API refuses missing, wrong and near-miss tokens, and the ingest token', async () => {
    for (const authorization of [
      undefined,
      '',
      'Bearer',
      'Bearer ',
      `bearer ${ADMIN_TOKEN}`,
      `Bearer ${ADMIN_TOKEN.slice(0, -1)}`,
      `Bearer ${ADMIN_TOKEN}x`,
      `Basic ${ADMIN_TOKEN}`,
      `Bearer ${INGEST_TOKEN}`,
    ]) {
      const answer = await fetch(`${g.url}/admin/state`, {
        headers: authorization === undefined ? {} : { authorization },
      });
      expect([authorization, answer.status, await answer.json()]).toEqual([
        authorization,
        401,
        { error: 'admin API: missing or wrong bearer token' },
      ]);
    }
    expect((await g.admin('GET', 'state')).status).toBe(200);
  });

  test('tokens are compared by digest: any length, never equal to a prefix or extension', () => {
    expect(tokenMatches('secret', 'secret')).toBe(true);
    expect(tokenMatches('secre', 'secret')).toBe(false);
    expect(tokenMatches('secrets', 'secret')).toBe(false);
    expect(tokenMatches('', 'secret')).toBe(false);
    expect(tokenMatches(null, 'secret')).toBe(false);
    expect(tokenMatches('x'.repeat(100_000), 'secret')).toBe(false);
  });

  test('the gateway refuses to start with the same token for admin and ingest', async () => {
    await expect(startGateway({ ingestToken: ADMIN_TOKEN })).rejects.toThrow(
      'the ingest token must differ from the admin token',
    );
  });
});
