/** Pure helpers of the gateway, table-tested: latency buckets, histogram quantiles, request targets. */
import {
  LATENCY_BOUNDS_MS,
  histogramQuantile,
  latencyBucket,
  measureCounts,
  type WindowCounts,
} from '../../src/serving/gateway/prediction-log';
import { HttpError, parseTarget } from '../../src/serving/gateway/http';
import { checkWeights } from '../../src/serving/gateway/routing';

const histogram = (latencies: number[]): WindowCounts['latency'] => {
  const counts = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
  for (const ms of latencies) counts[latencyBucket(ms)]!++;
  return { boundsMs: LATENCY_BOUNDS_MS, counts, maxMs: latencies.length ? Math.max(...latencies) : null };
};

const EDGES = LATENCY_BOUNDS_MS;
test.each([
  [0, 0],
  [EDGES[0]!, 0],
  [EDGES[0]! * 1.001, 1],
  [EDGES[50]!, 50],
  [EDGES[50]! * 1.001, 51],
  [EDGES[EDGES.length - 1]!, EDGES.length - 1],
  [EDGES[EDGES.length - 1]! + 1, EDGES.length],
  [1e9, EDGES.length],
])('latency %p ms is in bucket %p', (ms, bucket) => expect(latencyBucket(ms)).toBe(bucket));

test('latency buckets are 5% apart from 0.1 ms to about two minutes', () => {
  expect(EDGES[0]).toBe(0.1);
  for (let i = 1; i < EDGES.length; i++) expect(EDGES[i]! / EDGES[i - 1]!).toBeCloseTo(1.05, 2);
  expect(EDGES[EDGES.length - 1]).toBeGreaterThan(100_000);
});

test.each([
  ['empty', [], 0.99, null],
  ['one value', [7], 0.5, 7],
  ['all in one bucket, capped by the largest seen', [3.5, 3.6, 3.7], 0.99, 3.7],
  ['median of a spread', Array.from({ length: 100 }, (_, i) => i + 1), 0.5, 50],
  ['p99 of a spread', Array.from({ length: 100 }, (_, i) => i + 1), 0.99, 99.2],
  ['the open last bucket answers the largest', [5, 400_000], 0.99, 400_000],
])('%s: q%p -> %p (within a bucket width, 5%)', (_what, latencies, q, expected) => {
  const value = histogramQuantile(histogram(latencies), q);
  if (expected === null) expect(value).toBeNull();
  else expect(Math.abs(value! - expected)).toBeLessThanOrEqual(0.05 * expected);
});

test('measurements keep the counts they came from', () => {
  const counts: WindowCounts = {
    requests: 10,
    errors: 2,
    units: 10,
    latency: histogram([1, 2, 3, 4, 5, 6, 7, 8, 9, 10]),
  };
  expect(measureCounts(counts, 'error_rate', 'v2', 1, 2)).toEqual({
    metric: 'error_rate',
    version: 'v2',
    value: 0.2,
    samples: 10,
    events: 2,
    phase: 'Ok',
    fromMs: 1,
    toMs: 2,
    ...counts,
  });
  expect(measureCounts(counts, 'latency_p50_ms', 'v2', 1, 2).value).toBeCloseTo(5, 0);
  expect(measureCounts({ ...counts, requests: 0, errors: 0 }, 'error_rate', 'v2', 1, 2).value).toBeNull();
  expect(measureCounts(counts, 'latency_p999_ms', 'v2', 1, 2)).toMatchObject({ phase: 'Error', samples: 0 });
});

test.each([
  ['/health', ['health'], ''],
  ['/models/fraud/invocations?x=1', ['models', 'fraud', 'invocations'], 'x=1'],
  ['//models//fraud/', ['models', 'fraud'], ''],
  ['/a%20b/%E2%82%AC', ['a b', '€'], ''],
  ['/q?from=%ZZ&to=%E0%A4%A', ['q'], 'from=%ZZ&to=%E0%A4%A'],
])('target %p', (raw, segments, query) => {
  const t = parseTarget(raw);
  expect([t.segments, t.query.toString() === '' ? '' : raw.slice(raw.indexOf('?') + 1)]).toEqual([
    segments,
    query,
  ]);
});

test.each([
  [undefined, 400],
  ['', 400],
  ['*', 400],
  ['http://x/health', 400],
  ['/%', 400],
  ['/models/%E0%A4%A/invocations', 400],
  ['/%C0%80', 400],
  [`/${'a'.repeat(5000)}`, 414],
])('target %p is refused with %p', (raw, status) => {
  expect(() => parseTarget(raw)).toThrow(HttpError);
  try {
    parseTarget(raw);
  } catch (err) {
    expect((err as HttpError).status).toBe(status);
  }
});

test.each([
  [{ v1: 100 }, { v1: 100 }],
  [{ v1: 0, v2: 100 }, { v2: 100 }],
  [
    { constructor: 50, toString: 50 },
    { constructor: 50, toString: 50 },
  ],
])('weights %j are accepted as %j (null-prototype)', (input, expected) => {
  const weights = checkWeights('m', input);
  expect({ ...weights }).toEqual(expected);
  expect(Object.getPrototypeOf(weights)).toBeNull();
});

test.each([
  [null, 'weights for m must be an object {version: percent}'],
  [[100], 'weights for m must be an object {version: percent}'],
  [{}, 'weights for m are empty'],
  [JSON.parse('{"__proto__": 100}'), 'weights for m: "__proto__" is not a version name'],
  [{ v1: 50.5, v2: 49.5 }, 'weight of m/v1 must be a whole percent 0..100, got 50.5'],
  [{ v1: '100' }, 'weight of m/v1 must be a whole percent 0..100, got "100"'],
  [{ v1: 60, v2: 30 }, 'weights for m sum to 90, not 100'],
])('weights %j are refused: %s', (input, message) => {
  expect(() => checkWeights('m', input)).toThrow(message);
});
