/**
 * Slices through the real gateway: a route names slice keys, every request's values are recorded
 * with its prediction, the admin API reads counts, labelled rows and top values per slice, and the
 * measuring activity turns them into per-slice verdicts through the local metrics provider. A
 * candidate that fails only for German requests fails the DE slice, named. Hostile slice keys,
 * values and read parameters are refused with the reason.
 */
import { createServer, type Server } from 'node:http';
import type { ActivityContext } from '../../src/activities/context';
import { measureActivities } from '../../src/activities/measure';
import { assessGuardrails } from '../../src/analysis/slices';
import { GatewayClient } from '../../src/providers/local/gateway-client';
import { GatewayMetrics } from '../../src/providers/local/metrics';
import type { MetricsSource, ProviderRefs } from '../../src/providers/types';
import type { SliceQuery } from '../../src/workflows/types';
import {
  ADMIN_TOKEN,
  MODEL,
  leaseFor,
  startGateway,
  upstream,
  type TestGateway,
  type Upstream,
} from '../helpers/gateway';

const HOLDER = 'promotion-fraud/run-1';
const COUNTRIES = ['US', 'US', 'US', 'DE', 'FR'];

let v1: Upstream;
let v2: Server;
let g: TestGateway;

/** A candidate model server that fails every request whose first row's country is DE. */
async function failingForGermany(): Promise<{ server: Server; url: string }> {
  const server = createServer((req, res) => {
    if (req.url === '/ping') return void res.end('ok');
    const chunks: Buffer[] = [];
    req.on('data', (c: Buffer) => chunks.push(c));
    req.on('end', () => {
      const body = JSON.parse(Buffer.concat(chunks).toString('utf8')) as {
        dataframe_split: { columns: string[]; data: unknown[][] };
      };
      const i = body.dataframe_split.columns.indexOf('country');
      if (body.dataframe_split.data[0]![i] === 'DE') {
        res.statusCode = 500;
        return void res.end('{"error":"boom"}');
      }
      res.end(JSON.stringify({ predictions: [0.4] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  return { server, url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}` };
}

/** The measuring activity over one 50% split of v2 against v1, with the given metrics source and slices. */
function measureLive(metrics: MetricsSource, fromMs: number, toMs: number, slices: SliceQuery[]) {
  const acts = measureActivities({ providers: () => ({ metrics }) } as unknown as ActivityContext);
  return acts.measureLive({
    promotionId: 'p',
    model: MODEL,
    candidate: 'v2',
    champion: 'v1',
    refs: {} as ProviderRefs,
    splits: [{ fromMs, toMs: null, percent: 50 }],
    toMs,
    slices,
  });
}

const body = (country: string) => ({
  dataframe_split: { columns: ['amount', 'country'], data: [[12.5, country]] },
});

beforeAll(async () => {
  v1 = await upstream(0.2);
  const candidate = await failingForGermany();
  v2 = candidate.server;
  g = await startGateway();
  await g.admin('PUT', `backends/${MODEL}/v1`, { url: v1.url });
  await g.admin('PUT', `backends/${MODEL}/v2`, { url: candidate.url });
  await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 100 } });
});

afterAll(async () => {
  await g.close();
  v1.close();
  v2.closeAllConnections();
  v2.close();
});

test('the gateway records each request slice values and answers per-slice reads; the activity fails the bad slice', async () => {
  await g.admin('PUT', `leases/${MODEL}`, leaseFor(HOLDER));
  const routed = await g.admin('PUT', `routes/${MODEL}`, {
    weights: { v1: 50, v2: 50 },
    lease: HOLDER,
    sliceKeys: ['field:country', 'header:x-region'],
  });
  expect(await routed.json()).toMatchObject({ sliceKeys: ['field:country', 'header:x-region'] });
  const fromMs = Date.now() - 1;
  const answers: { status: number; version: string | null; requestId: string | null; country: string }[] = [];
  for (let i = 0; i < 400; i++) {
    const country = COUNTRIES[i % COUNTRIES.length]!;
    const a = await g.invoke(`e${i}`, { body: body(country), headers: { 'x-region': i % 2 ? 'eu' : 'us' } });
    answers.push({ ...a, country });
  }
  // A route change without sliceKeys keeps them.
  const kept = await g.admin('PUT', `routes/${MODEL}`, { weights: { v1: 50, v2: 50 }, lease: HOLDER });
  expect(await kept.json()).toMatchObject({ sliceKeys: ['field:country', 'header:x-region'] });
  const toMs = Date.now() + 1;
  await g.log.flush();
  const served = (version: string, country: string) =>
    answers.filter((a) => a.version === version && a.country === country);
  const read = async (path: string) => {
    const response = await g.admin('GET', path);
    expect(response.status).toBe(200);
    return (await response.json()) as Record<string, unknown>;
  };
  const span = `from=${fromMs}&to=${toMs}`;
  const de = await read(`measure/${MODEL}/v2?${span}&slice=field:country&value=DE`);
  expect([de.samples, de.errors]).toEqual([served('v2', 'DE').length, served('v2', 'DE').length]);
  const us = await read(`measure/${MODEL}/v2?${span}&slice=field:country&value=US`);
  expect([us.samples, us.errors]).toEqual([served('v2', 'US').length, 0]);
  const eu = await read(`measure/${MODEL}/v1?${span}&slice=header:x-region&value=eu`);
  expect(eu.samples).toBe(answers.filter((a, i) => a.version === 'v1' && i % 2 === 1).length);
  expect(await read(`slices/${MODEL}?key=field:country&${span}&limit=2`)).toEqual([
    { value: 'US', requests: 240 },
    { value: 'DE', requests: 80 },
  ]);
  // Labels joined by request id, read back per slice.
  const french = served('v1', 'FR');
  expect((await g.labels(french.map((a) => ({ requestId: a.requestId, label: 1 })))).status).toBe(200);
  const labelled = (await (
    await g.admin(
      'GET',
      `labelled/${MODEL}/v1?from=${fromMs}&to=${Date.now() + 1}&slice=field:country&value=FR`,
    )
  ).json()) as unknown[];
  expect(labelled).toHaveLength(french.length);

  // The measuring activity through the local provider, then the per-slice verdicts.
  const metrics = new GatewayMetrics(new GatewayClient(g.url, ADMIN_TOKEN));
  const live = await measureLive(metrics, fromMs, toMs, [
    { name: 'country', key: 'field:country', values: [], top: 3 },
  ]);
  expect(live.phase).toBe('Ok');
  expect(live.slices!.map((s) => s.value)).toEqual(['US', 'DE', 'FR']);
  const verdicts = assessGuardrails(
    [{ metric: 'error_rate', max: 0.05, alpha: 0.05, minSamples: 20 }],
    live,
    3,
  ).map((a) => `${a.subject}: ${a.verdict}`);
  expect(verdicts).toContain('guardrail error_rate [country=DE]: Fail');
  expect(verdicts).not.toContain('guardrail error_rate [country=US]: Fail');
  expect(verdicts).not.toContain('guardrail error_rate [country=FR]: Fail');
});

test('a slice value is cut at 100 characters and matched exactly, whatever it contains', async () => {
  const fromMs = Date.now() - 1;
  const long = 'x'.repeat(150);
  const sly = "US' or '1'='1";
  // An emoji across the cut, a lone surrogate, and an empty value (not recorded).
  const emoji = `${'y'.repeat(99)}😀tail`;
  const lone = 'bad\ud83d';
  for (const country of [long, sly, 'ünïcödé "quoted"', emoji, lone, ''])
    expect((await g.invoke(`z-${country.length}`, { body: body(country) })).status).toBeLessThan(600);
  await g.log.flush();
  const span = `from=${fromMs}&to=${Date.now() + 1}`;
  const values = (await (await g.admin('GET', `slices/${MODEL}?key=field:country&${span}`)).json()) as {
    value: string;
  }[];
  expect(values.map((v) => v.value).sort()).toEqual(
    ['x'.repeat(100), sly, 'ünïcödé "quoted"', 'y'.repeat(99), 'bad\ufffd'].sort(),
  );
  const count = async (value: string) => {
    let n = 0;
    for (const version of ['v1', 'v2']) {
      const r = await g.admin(
        'GET',
        `measure/${MODEL}/${version}?${span}&slice=field:country&value=${encodeURIComponent(value)}`,
      );
      n += ((await r.json()) as { samples: number }).samples;
    }
    return n;
  };
  expect(await count(sly)).toBe(1);
  expect(await count("x' or '1'='1")).toBe(0);
});

test('a slice that cannot be read is an Error of that slice; the overall counts stand', async () => {
  const fromMs = Date.now() - 1;
  for (let i = 0; i < 30; i++) await g.invoke(`w${i}`, { body: body('US') });
  const toMs = Date.now() + 1;
  const real = new GatewayMetrics(new GatewayClient(g.url, ADMIN_TOKEN));
  // A metrics source that answers overall counts but fails every slice read and the top values.
  const metrics = {
    counts: (q: Parameters<typeof real.counts>[0]) =>
      q.slice ? Promise.reject(new Error('slice reads are down')) : real.counts(q),
    sliceValues: () => Promise.reject(new Error('top values are down')),
    labelled: real.labelled.bind(real),
    shadowPairs: real.shadowPairs.bind(real),
  };
  const live = await measureLive(metrics, fromMs, toMs, [
    { name: 'country', key: 'field:country', values: ['US'], top: null },
    { name: 'region', key: 'header:x-region', values: [], top: 2 },
  ]);
  expect(live.phase).toBe('Ok');
  const verdicts = assessGuardrails(
    [{ metric: 'error_rate', max: 0.5, alpha: 0.05, minSamples: 10 }],
    live,
    3,
  ).map((a) => `${a.subject}: ${a.verdict}: ${a.evidence}`);
  expect(verdicts[0]).toMatch(/^guardrail error_rate: (Pass|Inconclusive): /);
  expect(verdicts.slice(1)).toEqual([
    'guardrail error_rate [country=US]: Error: measuring failed: slice reads are down',
    'guardrail error_rate [region=*]: Error: measuring failed: top values are down',
  ]);
});

test.each<[string, string, unknown, RegExp]>([
  [
    'five slice keys',
    'routes',
    { sliceKeys: ['a', 'b', 'c', 'd', 'e'].map((k) => `field:${k}`) },
    /at most 4 keys/,
  ],
  ['a key twice', 'routes', { sliceKeys: ['field:a', 'field:a'] }, /listed twice/],
  ['a key that is not a list', 'routes', { sliceKeys: 'field:a' }, /a list of at most 4/],
  [
    'a quote in a key',
    'routes',
    { sliceKeys: ['field:a"b'] },
    /sliceKeys\[0\] must be header:<name> or field:<name>/,
  ],
  ['a cookie key', 'routes', { sliceKeys: ['cookie:a'] }, /sliceKeys\[0\] must be/],
  ['a number as a key', 'routes', { sliceKeys: [7] }, /sliceKeys\[0\] must be/],
])('a route with %s is refused', async (_name, _resource, extra, message) => {
  const response = await g.admin('PUT', `routes/${MODEL}`, {
    weights: { v1: 50, v2: 50 },
    lease: HOLDER,
    ...(extra as object),
  });
  expect(response.status).toBe(400);
  expect(((await response.json()) as { error: string }).error).toMatch(message);
});

test.each<[string, string, RegExp]>([
  ['a slice without a value', `measure/${MODEL}/v1?slice=field:country`, /slice and value go together/],
  ['a value without a slice', `labelled/${MODEL}/v1?value=DE`, /slice and value go together/],
  ['an empty value', `measure/${MODEL}/v1?slice=field:country&value=`, /value: 1\.\.100 characters/],
  [
    'a value over 100 characters',
    `measure/${MODEL}/v1?slice=field:country&value=${'x'.repeat(101)}`,
    /value: 1\.\.100/,
  ],
  [
    'SQL in the key',
    `measure/${MODEL}/v1?slice=${encodeURIComponent("field:a') or 1=1 --")}&value=x`,
    /slice must be/,
  ],
  ['slices without a key', `slices/${MODEL}`, /key must be header:<name> or field:<name>/],
  ['a JSON path as the key', `slices/${MODEL}?key=${encodeURIComponent('$.a')}`, /key must be/],
  ['a limit of 0', `slices/${MODEL}?key=field:country&limit=0`, /limit must be a whole number/],
])('a read with %s is refused', async (_name, path, message) => {
  const response = await g.admin('GET', path);
  expect(response.status).toBe(400);
  expect(((await response.json()) as { error: string }).error).toMatch(message);
});
