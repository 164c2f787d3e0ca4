/**
 * The local validator against fixture model servers (fast, slow, failing, flaky, hanging) and a
 * fixture gateway: gates cannot pass on missing information. Each case runs the measurement through
 * the real gate assessment, so the table states the verdict a promotion would see.
 */
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { mkdirSync, mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { assessGate } from '../../src/analysis/gate';
import type { Measurement, Verdict } from '../../src/analysis/types';
import { NotFoundError } from '../../src/common/errors';
import type { Gate } from '../../src/plan/schema';
import { Datasets } from '../../src/providers/local/datasets';
import { GatewayClient } from '../../src/providers/local/gateway-client';
import { LocalValidator, latencyMeasurement, type ServerLookup } from '../../src/providers/local/validator';
import type { FeatureSpec, ModelVersion, Registry } from '../../src/providers/types';
import type { ServerRecord } from '../../src/serving/supervisor';

const MODEL = 'm';
const FEATURES: FeatureSpec[] = [
  { name: 'amount', type: 'double' },
  { name: 'age', type: 'long' },
];

type Handler = (req: IncomingMessage, res: ServerResponse, body: string) => void;

/** Model server behaviours, by version. */
let calls = 0;
const behaviours: Record<string, Handler> = {
  fast: (_req, res, body) => {
    const rows = (JSON.parse(body) as { dataframe_split: { data: number[][] } }).dataframe_split.data;
    // A score that separates the labels written below: label = amount > 50.
    res.end(JSON.stringify({ predictions: rows.map((r) => (r[0]! > 50 ? 0.9 : 0.1)) }));
  },
  slow: (req, res, body) => void setTimeout(() => behaviours.fast!(req, res, body), 30),
  failing: (_req, res) => {
    res.statusCode = 500;
    res.end('{"error_code":"BAD_REQUEST","message":"boom"}');
  },
  /** One request in ten fails fast: the failures are quicker than any success. */
  flaky: (req, res, body) => (++calls % 10 === 0 ? behaviours.failing! : behaviours.fast!)(req, res, body),
  hanging: () => undefined,
  garbage: (_req, res) => res.end('{"predictions":"not a list"}'),
};

const servers: Server[] = [];
const ports: Record<string, number> = {};

function listen(handler: Handler): Promise<number> {
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d: Buffer) => (body += d.toString()));
    req.on('end', () => handler(req, res, body));
  });
  servers.push(server);
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as { port: number }).port)),
  );
}

/** The gateway's feature list per model, as GET /admin/features/<model> answers it. */
let served: unknown = FEATURES;

class FakeRegistry implements Registry {
  readonly versions = new Map<string, FeatureSpec[]>();
  getVersion(model: string, version: string): Promise<ModelVersion> {
    const inputs = this.versions.get(version);
    if (!inputs) return Promise.reject(new NotFoundError(`${model}/${version} not found`));
    return Promise.resolve({ model, version, inputs, tags: {} });
  }
  getAlias(): Promise<string | null> {
    return Promise.resolve(null);
  }
  setAlias(): Promise<void> {
    return Promise.resolve();
  }
  setTags(): Promise<void> {
    return Promise.resolve();
  }
}

const registry = new FakeRegistry();
const lookup: ServerLookup = {
  get: (model, version) =>
    ports[version] === undefined
      ? undefined
      : { model, version, port: ports[version], pid: 0, startedAt: '', restarts: 0 },
  endpoint: (record: ServerRecord) => `http://127.0.0.1:${record.port}`,
};
let validator: LocalValidator;

beforeAll(async () => {
  for (const [name, handler] of Object.entries(behaviours)) {
    ports[name] = await listen(handler);
    registry.versions.set(name, FEATURES);
  }
  registry.versions.set('unsigned', []);
  registry.versions.set('absent', FEATURES);
  ports.unsigned = ports.fast!;
  const gatewayPort = await listen((req, res) => {
    if (req.url === `/admin/features/${MODEL}`) res.end(JSON.stringify(served));
    else {
      res.statusCode = 404;
      res.end('{"error":"no such route"}');
    }
  });
  const dir = mkdtempSync(join(tmpdir(), 'promote-validator-'));
  mkdirSync(join(dir, MODEL));
  const rows = Array.from({ length: 300 }, (_, i) => `${i % 100},${i},${i % 100 > 50 ? 1 : 0},e${i}`);
  writeFileSync(join(dir, MODEL, 'holdout.csv'), ['amount,age,label,entity_id', ...rows].join('\n'));
  validator = new LocalValidator(
    lookup,
    registry,
    new GatewayClient(`http://127.0.0.1:${gatewayPort}`, 'token'),
    new Datasets(dir),
    { loadRequests: 40, loadConcurrency: 4, loadTimeoutMs: 150, loadBudgetMs: 5000, scoreTimeoutMs: 300 },
  );
});

afterAll(async () => {
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
});

beforeEach(() => {
  calls = 0;
  served = FEATURES;
});

const latency: Gate = { metric: 'latency_p99_ms', dataset: 'holdout', max: 100 };
const median: Gate = { metric: 'latency_p50_ms', dataset: 'holdout', max: 100 };
const auc: Gate = { metric: 'auc', dataset: 'holdout', min: 0.9 };
const schema: Gate = { check: 'feature_schema', dataset: 'holdout' };

const cases: [string, string, Gate, Verdict, RegExp][] = [
  ['a fast server', 'fast', latency, 'Pass', /within limits/],
  ['a slow server (30ms) under a 20ms max', 'slow', { ...latency, max: 20 }, 'Fail', /> max 20/],
  ['a server failing every request', 'failing', latency, 'Error', /answered none of 40 requests.*HTTP 500/],
  ['a server failing one request in ten (fast failures)', 'flaky', latency, 'Fail', /> max 100/],
  ['a hanging server', 'hanging', latency, 'Error', /answered none.*40 timed out/],
  ['no running server', 'absent', latency, 'Error', /no running model server/],
  ['no input signature, latency', 'unsigned', latency, 'Error', /no input signature/],
  ['auc on a fast server', 'fast', auc, 'Pass', /auc 1 within limits/],
  ['auc on a failing server', 'failing', auc, 'Error', /scoring the holdout failed: HTTP 500/],
  ['auc on a hanging server', 'hanging', auc, 'Error', /no answer within 300ms/],
  ['auc on a server answering garbage', 'garbage', auc, 'Error', /not 100 numeric predictions/],
  ['no input signature, auc', 'unsigned', auc, 'Error', /no input signature/],
  ['feature schema served', 'fast', schema, 'Pass', /compatible: 2 inputs served/],
  ['feature schema without a signature', 'unsigned', schema, 'Fail', /incompatible: .*no input signature/],
];

test.each(cases)('%s (%s, %j): %s', async (_name, version, gate, verdict, evidence) => {
  const measured = await validator.measureGate(MODEL, version, gate);
  const assessment = assessGate(gate, measured);
  expect(assessment.verdict).toBe(verdict);
  expect(`${assessment.evidence} ${measured.detail ?? ''}`).toMatch(evidence);
});

test('a flaky server: failures are reported and counted at the timeout, the median stays honest', async () => {
  const p99 = await validator.measureGate(MODEL, 'flaky', latency);
  expect(p99).toMatchObject({ phase: 'Ok', samples: 40, events: 4 });
  // The timeout is twice the gate's max (200ms), above the configured 150ms.
  expect(p99.value).toBeGreaterThanOrEqual(200);
  expect(p99.detail).toMatch(
    /^40 requests, 4 failed \(0 timed out\), counted at 200ms or more; first: HTTP 500/,
  );
  calls = 0;
  const p50 = await validator.measureGate(MODEL, 'flaky', median);
  expect(p50.value).toBeLessThan(100);
  expect(assessGate(median, p50).verdict).toBe('Pass');
});

test('the per-request timeout exceeds the gate: a failure counted at it can never pass max', async () => {
  // With max 1000 the timeout is raised from 150ms to 2000ms.
  const gate: Gate = { ...latency, max: 1000 };
  const measured = await validator.measureGate(MODEL, 'flaky', gate);
  expect(measured.value).toBeGreaterThanOrEqual(2000);
  expect(assessGate(gate, measured).verdict).toBe('Fail');
});

test('a latency regression against the champion counts the candidate failures', async () => {
  const gate: Gate = { metric: 'latency_p99_ms', dataset: 'holdout', maxRegressionVsChampion: 50 };
  const champion = await validator.measureGate(MODEL, 'fast', gate);
  const candidate = await validator.measureGate(MODEL, 'flaky', gate);
  expect(assessGate(gate, candidate, champion)).toMatchObject({ verdict: 'Fail' });
});

test.each<[string, unknown, Verdict, RegExp]>([
  ['no traffic yet', [], 'NoData', /no traffic/],
  ['a missing input', [{ name: 'amount', type: 'double' }], 'Fail', /missing age/],
  [
    'an incompatible type',
    [...FEATURES.slice(0, 1), { name: 'age', type: 'string' }],
    'Fail',
    /age is string/,
  ],
  [
    'numeric widening',
    [
      { name: 'amount', type: 'long' },
      { name: 'age', type: 'double' },
    ],
    'Pass',
    /2 inputs/,
  ],
  ['a malformed gateway answer', { amount: 'double' }, 'Error', /not a list/],
  ['a malformed entry', [{ name: 1, type: 'double' }], 'Error', /not a list/],
])('feature schema against the gateway: %s', async (_name, answer, verdict, evidence) => {
  served = answer;
  const measured = await validator.measureGate(MODEL, 'fast', schema);
  const assessment = assessGate(schema, measured);
  expect(assessment.verdict).toBe(verdict);
  expect(`${assessment.evidence} ${measured.error ?? ''}`).toMatch(evidence);
});

test.each<[string, number[], number, Partial<Measurement>]>([
  ['all fine', [5, 6, 7], 0, { phase: 'Ok', samples: 3, events: 0 }],
  ['all failed', [150, 150], 2, { phase: 'Error', value: null, samples: 2 }],
  ['nothing sent', [], 0, { phase: 'Error', value: null, samples: 0 }],
])('latencyMeasurement: %s', (_name, latencies, failed, expected) => {
  const m = latencyMeasurement('latency_p99_ms', 'v', 0.99, {
    latencies,
    failed,
    timedOut: 0,
    firstFailure: failed ? 'HTTP 500' : null,
    timeoutMs: 150,
    truncated: false,
  });
  expect(m).toMatchObject(expected);
});
