/**
 * Property-based fuzzing of the gateway with fast-check: random methods, paths (with bad
 * percent-encodings and prototype names), headers and bodies, sent as raw bytes. Every answer must
 * arrive, be 2xx or 4xx, and be JSON; afterwards the gateway still serves and routes, and
 * Object.prototype is untouched.
 */
import fc from 'fast-check';
import {
  ADMIN_TOKEN,
  INGEST_TOKEN,
  MODEL,
  parseRaw,
  rawRequest,
  startGateway,
  upstream,
  type TestGateway,
  type Upstream,
  doc,
} from '../helpers/gateway';

let v1: Upstream;
let g: TestGateway;

beforeAll(async () => {
  v1 = await upstream(0.3);
  g = await startGateway({ requestTimeoutMs: 2000, headersTimeoutMs: 2000 });
  await g.admin('PUT', `backends/${MODEL}/v1`, { url: v1.url });
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 } });
});

afterAll(async () => {
  await g.close();
  v1.close();
});

const hostile = ['__proto__', 'constructor', 'toString', 'prototype', 'hasOwnProperty', 'valueOf'];

const segment = fc.oneof(
  fc.constantFrom('models', MODEL, 'invocations', 'labels', 'admin', 'routes', 'leases', 'measure', 'pairs'),
  fc.constantFrom('health', 'metrics', 'state', 'features', 'backends', 'v1', '..', '.', ''),
  fc.constantFrom(...hostile),
  fc.constantFrom('%', '%E0%A4%A', '%ZZ', '%00', '%2F', '%C0%80', '%FF%FE', '%25', '%E2%82'),
  fc.stringMatching(/^[A-Za-z0-9._~%!$&'()*+,;=:@-]{0,30}$/),
  fc.string({ unit: 'binary', maxLength: 12 }).map((s) => encodeURIComponent(s)),
);

const query = fc.option(
  fc.array(
    fc.tuple(
      fc.constantFrom('from', 'to', 'metric', 'champion', 'candidate', 'holder', 'limit', '__proto__', 'x'),
      fc.stringMatching(/^[A-Za-z0-9%._-]{0,20}$/),
    ),
    { maxLength: 4 },
  ),
  { nil: undefined },
);

const name = fc.oneof({ weight: 4, arbitrary: fc.constant(MODEL) }, { weight: 3, arbitrary: segment });
/** Paths shaped like the gateway's own (so the fuzz reaches the handlers), or anything. */
const segments = fc.oneof(
  fc.tuple(name, fc.constantFrom('invocations', 'labels')).map(([m, a]) => ['models', m, a]),
  fc
    .tuple(
      fc.constantFrom('routes', 'leases', 'measure', 'pairs', 'labelled', 'features', 'state'),
      name,
      name,
    )
    .map(([r, m, v]) => ['admin', r, m, v].slice(0, r === 'measure' || r === 'labelled' ? 4 : 3)),
  fc.constantFrom(['health'], ['metrics']),
  fc.array(segment, { minLength: 0, maxLength: 5 }),
);
const target = fc
  .tuple(segments, query)
  .map(([parts, q]) => `/${parts.join('/')}${q ? `?${q.map(([k, v]) => `${k}=${v}`).join('&')}` : ''}`);

const method = fc.oneof(
  fc.constantFrom('GET', 'POST', 'PUT', 'DELETE', 'PATCH', 'HEAD', 'OPTIONS'),
  fc.stringMatching(/^[A-Z]{1,10}$/),
);

const headerValue = fc.stringMatching(/^[\x21-\x7e]{0,60}$/);
const headers = fc.array(
  fc.oneof(
    fc.tuple(fc.constantFrom('x-request-id', 'x-entity-id', 'content-type', 'accept', 'expect'), headerValue),
    fc.tuple(fc.constant('authorization'), fc.oneof(headerValue, fc.constant(`Bearer ${INGEST_TOKEN}`))),
    fc.tuple(fc.stringMatching(/^x-[a-z0-9-]{1,20}$/), headerValue),
  ),
  { maxLength: 5 },
);

const jsonBody = fc.oneof(
  fc.json({ maxDepth: 4 }),
  fc.constantFrom(
    '{"__proto__": {"polluted": 1}}',
    '{"constructor": {"prototype": {"polluted": 1}}}',
    '{"dataframe_split": {"columns": ["__proto__", "method", "polluted"], "data": [[1, 2, 3]]}}',
    '{"dataframe_split": {"columns": "abc", "data": "xyz"}}',
    '{"labels": [{"requestId": "__proto__", "label": 1}]}',
    '{"labels": {"__proto__": 1}}',
    '{"weights": {"__proto__": 100}}',
  ),
  fc
    .record({
      columns: fc.array(fc.oneof(fc.constantFrom(...hostile), fc.string({ maxLength: 20 })), {
        maxLength: 8,
      }),
      row: fc.array(fc.jsonValue({ maxDepth: 1 }), { maxLength: 8 }),
    })
    .map(({ columns, row }) => JSON.stringify({ dataframe_split: { columns, data: [row] } })),
  fc.string({ maxLength: 200 }),
);

const request = fc.record({
  method: fc.oneof(
    { weight: 3, arbitrary: fc.constant('POST') },
    { weight: 2, arbitrary: fc.constant('GET') },
    method,
  ),
  target,
  headers,
  body: jsonBody,
  admin: fc.boolean(),
});

function bytesOf(r: {
  method: string;
  target: string;
  headers: [string, string][];
  body: string;
  admin: boolean;
}) {
  const body = Buffer.from(r.body, 'utf8');
  // The admin token only on reads: random writes could legitimately change the routes under test.
  const auth = r.admin && r.method === 'GET' ? [['authorization', `Bearer ${ADMIN_TOKEN}`]] : [];
  const lines = [...auth, ...r.headers].map(([k, v]) => `${k}: ${v}\r\n`).join('');
  const head = `${r.method} ${r.target} HTTP/1.1\r\nHost: gateway\r\n${lines}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`;
  return Buffer.concat([Buffer.from(head, 'latin1'), body]);
}

test('random requests always get a 2xx/4xx JSON answer, and the gateway keeps routing', async () => {
  const seen = new Map<number, number>();
  await fc.assert(
    fc.asyncProperty(request, async (r) => {
      const answer = parseRaw(await rawRequest(g.url, bytesOf(r), 5000));
      seen.set(answer.status, (seen.get(answer.status) ?? 0) + 1);
      // An answer arrived (not a dropped connection), and it is not a gateway failure.
      expect(answer.status).toBeGreaterThanOrEqual(200);
      expect(answer.status).toBeLessThan(500);
      // The gateway reads paths by segments, so /metrics/ and //metrics are /metrics too.
      const metrics = r.method === 'GET' && /^\/+metrics\/*(\?|$)/.test(r.target) && answer.status === 200;
      if (!metrics) expect(answer.headers).toMatch(/content-type: application\/json/i);
      if (r.method !== 'HEAD' && !metrics) expect(typeof answer.body).not.toBe('string');
      expect(Object.getOwnPropertyNames(Object.prototype)).not.toContain('polluted');
      expect(Object.getOwnPropertyNames(Object.prototype)).not.toContain('method');
    }),
    { numRuns: 400 },
  );
  // The fuzz reached the gateway's paths, not only the parser's refusals.
  expect(seen.get(200) ?? 0).toBeGreaterThan(20);
  expect(seen.get(404) ?? 0).toBeGreaterThan(0);
  expect(seen.get(400) ?? 0).toBeGreaterThan(0);

  expect(await (await fetch(`${g.url}/health`)).json()).toEqual({ ok: true });
  expect(await g.invoke('after-fuzz')).toMatchObject({ status: 200, version: 'v1' });
  const route = await doc(g.admin('GET', `routes/${MODEL}`));
  expect(route.weights).toEqual({ v1: 100 });
  expect(({} as Record<string, unknown>).polluted).toBeUndefined();
}, 300_000);
