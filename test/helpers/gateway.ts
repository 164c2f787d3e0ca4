/** Shared fixtures of the gateway tests: fixture model servers and a gateway in this process. */
import { mkdtempSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { connect } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { Gateway, type GatewayOptions } from '../../src/serving/gateway/server';
import { SqlitePredictionLog, type PredictionLog } from '../../src/serving/gateway/prediction-log';

export const ADMIN_TOKEN = 'test-admin-token';
export const INGEST_TOKEN = 'test-ingest-token';
export const MODEL = 'fraud';

/** A fixture upstream speaking MLflow's scoring protocol; `hold` keeps /invocations from answering. */
export interface Upstream {
  url: string;
  received: number;
  hold: boolean;
  server: Server;
  close(): void;
}

export async function upstream(score: number): Promise<Upstream> {
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
  u.close = () => {
    u.server.closeAllConnections();
    u.server.close();
  };
  return u;
}

export interface TestGateway {
  gateway: Gateway;
  url: string;
  stateDir: string;
  log: PredictionLog;
  admin(method: string, path: string, body?: unknown, token?: string): Promise<Response>;
  invoke(
    entity: string,
    init?: { model?: string; body?: unknown; headers?: Record<string, string> },
  ): Promise<Invocation>;
  labels(labels: unknown, token?: string): Promise<Response>;
  /** Stops this gateway and starts another on the same state and log (a restart). */
  restart(opts?: Partial<GatewayOptions>): Promise<void>;
  close(): Promise<void>;
}

export interface Invocation {
  status: number;
  version: string | null;
  requestId: string | null;
  body: string;
}

export async function startGateway(
  opts: Partial<GatewayOptions> & { stateDir?: string; log?: PredictionLog } = {},
): Promise<TestGateway> {
  const stateDir = opts.stateDir ?? mkdtempSync(join(tmpdir(), 'promote-gw-'));
  const log = opts.log ?? new SqlitePredictionLog(join(stateDir, 'predictions.db'));
  const make = async (extra: Partial<GatewayOptions>) => {
    const gateway = new Gateway({
      stateDir,
      log,
      adminToken: ADMIN_TOKEN,
      ingestToken: INGEST_TOKEN,
      logger: pino({ level: 'silent' }),
      ...opts,
      ...extra,
    });
    const { url } = await gateway.listen(0);
    return { gateway, url };
  };
  const t = { stateDir, log, ...(await make({})) } as TestGateway;
  t.admin = (method, path, body, token = ADMIN_TOKEN) =>
    fetch(`${t.url}/admin/${path}`, {
      method,
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
  t.invoke = async (entity, init = {}) => {
    const response = await fetch(`${t.url}/models/${init.model ?? MODEL}/invocations`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-entity-id': entity, ...init.headers },
      body: JSON.stringify(init.body ?? { dataframe_split: { columns: ['amount'], data: [[12.5]] } }),
    });
    return {
      status: response.status,
      version: response.headers.get('x-promote-version'),
      requestId: response.headers.get('x-request-id'),
      body: await response.text(),
    };
  };
  t.labels = (labels, token = INGEST_TOKEN) =>
    fetch(`${t.url}/models/${MODEL}/labels`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json' },
      body: JSON.stringify({ labels }),
    });
  t.restart = async (extra = {}) => {
    await t.gateway.close();
    Object.assign(t, await make(extra));
  };
  t.close = async () => {
    await t.gateway.close();
    if (!opts.log) await log.close();
  };
  return t;
}

/** Sends raw bytes on a new connection and resolves with everything the server sent back. */
export function rawRequest(url: string, bytes: string | Buffer, waitMs = 3000): Promise<string> {
  const { hostname, port } = new URL(url);
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    const socket = connect(Number(port), hostname, () => socket.write(bytes));
    const timer = setTimeout(() => {
      socket.destroy();
      resolve(Buffer.concat(chunks).toString('utf8'));
    }, waitMs);
    socket.on('data', (c: Buffer) => chunks.push(c));
    socket.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    socket.on('close', () => {
      clearTimeout(timer);
      resolve(Buffer.concat(chunks).toString('utf8'));
    });
  });
}

/** Status code and JSON body of a raw HTTP/1.1 answer. */
export function parseRaw(text: string): { status: number; headers: string; body: unknown } {
  // Interim answers (100 Continue) come before the real one.
  let answer = text;
  while (/^HTTP\/1\.1 1\d\d /.test(answer) && answer.includes('\r\n\r\n'))
    answer = answer.slice(answer.indexOf('\r\n\r\n') + 4);
  const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(answer)?.[1] ?? 0);
  const split = answer.indexOf('\r\n\r\n');
  const headers = split < 0 ? answer : answer.slice(0, split);
  const raw = split < 0 ? '' : answer.slice(split + 4);
  let body: unknown = raw;
  try {
    body = JSON.parse(raw);
  } catch {
    // not JSON: left as text for the assertion to show
  }
  return { status, headers, body };
}

/** A lease request body for the fixture model. */
export const leaseFor = (holder: string, ttlMs = 60_000) => ({
  holder,
  champion: 'v1',
  candidate: 'v2',
  ttlMs,
});

/** A JSON answer, typed loosely enough for assertions on its fields. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- assertions read fields of any shape
export type Doc = Record<string, any>;
export const doc = async (r: Response | Promise<Response>): Promise<Doc> => (await (await r).json()) as Doc;
