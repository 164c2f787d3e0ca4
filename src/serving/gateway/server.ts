/**
 * The gateway: one inference endpoint in front of the model servers. Weighted sticky routing,
 * sampled shadow mirroring that never waits on the primary path, per-version Prometheus metrics,
 * the prediction log, label ingestion, and an authenticated admin API whose state is persisted.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { join } from 'node:path';
import { Counter, Gauge, Histogram, Registry } from 'prom-client';
import { quantile } from '../../analysis/stats';
import type { Measurement } from '../../analysis/types';
import { InvalidInputError, NotFoundError, PromoteError } from '../../common/errors';
import type { Logger } from '../../common/logger';
import { JsonFile } from '../../providers/inprocess/store';
import type { Prediction, PredictionLog } from './prediction-log';
import { checkWeights, pickVersion } from './routing';

export interface GatewayRoute {
  weights: Record<string, number>;
  shadow: { version: string; sampleRate: number } | null;
  /** `header:<name>` or `field:<name>`. */
  stickyKey: string;
}

export interface Fault {
  latencyMs: number;
  errorRate: number;
}

export interface Thresholds {
  review: number;
  block: number;
}

export interface GatewayState {
  routes: Record<string, GatewayRoute>;
  /** Input columns the live traffic carries per model, with the JSON type of their values. */
  features: Record<string, Record<string, string>>;
  backends: Record<string, Record<string, string>>;
  faults: Record<string, Record<string, Fault>>;
  policies: Record<string, Record<string, Thresholds>>;
}

export interface GatewayOptions {
  stateDir: string;
  log: PredictionLog;
  adminToken: string;
  logger: Logger;
  /** Mirrored requests waiting at most; beyond it they are dropped and counted. Default 1000. */
  mirrorQueue?: number;
  /** Mirrored requests in flight at once. Default 4. */
  mirrorConcurrency?: number;
  /** Upstream timeout, ms. Default 10000. */
  upstreamTimeoutMs?: number;
}

const DEFAULT_THRESHOLDS: Thresholds = { review: 0.5, block: 0.9 };
const MAX_BODY = 1 << 20;

class HttpError extends Error {
  constructor(
    readonly status: number,
    message: string,
  ) {
    super(message);
  }
}

function statusOf(err: unknown): number {
  if (err instanceof HttpError) return err.status;
  if (err instanceof NotFoundError) return 404;
  if (err instanceof InvalidInputError) return 400;
  if (err instanceof PromoteError) return 409;
  return 500;
}

async function readBody(req: IncomingMessage): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > MAX_BODY) throw new HttpError(413, `request body over ${MAX_BODY} bytes`);
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

function parseJson(body: Buffer, what: string): unknown {
  try {
    return JSON.parse(body.toString('utf8'));
  } catch {
    throw new InvalidInputError(`${what}: the body is not valid JSON`);
  }
}

const url = (req: IncomingMessage) => new URL(req.url ?? '/', 'http://gateway').searchParams;

/** A live metric over a window of primary predictions (what the guardrails measure). */
export function measureWindow(
  rows: Prediction[],
  metric: string,
  version: string,
  fromMs: number,
  toMs: number,
): Measurement {
  const base = { metric, version, samples: rows.length, phase: 'Ok' as const, fromMs, toMs };
  if (rows.length === 0) return { ...base, value: null };
  if (metric === 'error_rate') {
    const errors = rows.filter((r) => r.status >= 400).length;
    return { ...base, value: errors / rows.length, events: errors };
  }
  const match = /^latency_p(\d+)_ms$/.exec(metric);
  if (!match)
    return {
      ...base,
      value: null,
      samples: 0,
      phase: 'Error',
      error: `the gateway does not measure ${metric}`,
    };
  return {
    ...base,
    value: quantile(
      rows.map((r) => r.latencyMs),
      Number(match[1]) / 100,
    ),
  };
}

function send(
  res: ServerResponse,
  status: number,
  body: unknown,
  headers: Record<string, string> = {},
): void {
  const text = typeof body === 'string' ? body : JSON.stringify(body);
  res.writeHead(status, {
    'content-type': typeof body === 'string' ? 'text/plain; version=0.0.4' : 'application/json',
    ...headers,
  });
  res.end(text);
}

/** The sticky key of a request: a header, or a field of MLflow's dataframe_split / dataframe_records body. */
export function stickyKeyOf(spec: string, headers: IncomingMessage['headers'], body: unknown): string | null {
  const [kind, name] = [spec.slice(0, spec.indexOf(':')), spec.slice(spec.indexOf(':') + 1)];
  if (kind === 'header') {
    const value = headers[name.toLowerCase()];
    return typeof value === 'string' && value !== '' ? value : null;
  }
  const scalar = (v: unknown): string | null =>
    typeof v === 'string' || typeof v === 'number' || typeof v === 'boolean' ? String(v) : null;
  const b = body as {
    dataframe_split?: { columns?: string[]; data?: unknown[][] };
    dataframe_records?: Record<string, unknown>[];
  };
  const split = b?.dataframe_split;
  if (split?.columns && split.data?.[0]) {
    const i = split.columns.indexOf(name);
    if (i >= 0) return scalar(split.data[0][i]);
  }
  return scalar(b?.dataframe_records?.[0]?.[name]);
}

export class Gateway {
  private readonly file: JsonFile<GatewayState>;
  private state: GatewayState;
  readonly metrics = new Registry();
  private readonly requests: Counter<'model' | 'version' | 'role' | 'code'>;
  private readonly errors: Counter<'model' | 'version' | 'role'>;
  private readonly latency: Histogram<'model' | 'version' | 'role'>;
  private readonly scores: Histogram<'model' | 'version' | 'role'>;
  private readonly shadowDrops: Counter<'model' | 'version'>;
  private readonly queueDepth: Gauge;
  private readonly queue: (() => Promise<void>)[] = [];
  private inFlight = 0;
  private server: Server | null = null;

  constructor(private readonly opts: GatewayOptions) {
    this.file = new JsonFile(join(opts.stateDir, 'gateway-state.json'), () => ({
      routes: {},
      features: {},
      backends: {},
      faults: {},
      policies: {},
    }));
    this.state = this.file.read();
    this.state.features ??= {};
    const labelNames = ['model', 'version', 'role'] as const;
    this.requests = new Counter({
      name: 'promote_gateway_requests_total',
      help: 'Requests by version, role and HTTP status code',
      labelNames: [...labelNames, 'code'],
      registers: [this.metrics],
    });
    this.errors = new Counter({
      name: 'promote_gateway_errors_total',
      help: 'Failed requests (HTTP status >= 400, or no answer from the model server)',
      labelNames,
      registers: [this.metrics],
    });
    this.latency = new Histogram({
      name: 'promote_gateway_request_duration_seconds',
      help: 'Request latency through the gateway, seconds',
      labelNames,
      buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers: [this.metrics],
    });
    this.scores = new Histogram({
      name: 'promote_gateway_score',
      help: 'Model scores (first prediction of each request)',
      labelNames,
      buckets: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1],
      registers: [this.metrics],
    });
    this.shadowDrops = new Counter({
      name: 'promote_gateway_shadow_dropped_total',
      help: 'Mirrored requests dropped because the mirror queue was full',
      labelNames: ['model', 'version'],
      registers: [this.metrics],
    });
    this.queueDepth = new Gauge({
      name: 'promote_gateway_shadow_queue_depth',
      help: 'Mirrored requests waiting',
      registers: [this.metrics],
      collect: () => this.queueDepth.set(this.queue.length),
    });
  }

  snapshot(): GatewayState {
    return structuredClone(this.state);
  }

  async listen(port: number, host = '127.0.0.1'): Promise<{ url: string }> {
    this.server = createServer((req, res) => void this.handle(req, res));
    this.server.keepAliveTimeout = 65_000;
    await new Promise<void>((resolve) => this.server!.listen(port, host, resolve));
    const address = this.server.address();
    const actual = typeof address === 'object' && address ? address.port : port;
    return { url: `http://${host}:${actual}` };
  }

  /** Stops accepting requests and lets queued mirror calls finish (at most `drainMs`, default 5s). */
  async close(drainMs = 5000): Promise<void> {
    // Keep-alive connections would hold server.close() open for as long as clients keep sending:
    // close them now, then wait for the listener to go.
    const closed = new Promise<void>((resolve) =>
      this.server ? this.server.close(() => resolve()) : resolve(),
    );
    this.server?.closeAllConnections();
    await closed;
    const deadline = Date.now() + drainMs;
    while ((this.inFlight > 0 || this.queue.length > 0) && Date.now() < deadline)
      await new Promise((r) => setTimeout(r, 20));
    this.queue.length = 0;
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const url = new URL(req.url ?? '/', 'http://gateway');
    const parts = url.pathname.split('/').filter(Boolean).map(decodeURIComponent);
    try {
      if (req.method === 'GET' && url.pathname === '/health') return send(res, 200, { ok: true });
      if (req.method === 'GET' && url.pathname === '/metrics')
        return send(res, 200, await this.metrics.metrics());
      if (parts[0] === 'models' && parts.length === 3 && req.method === 'POST') {
        if (parts[2] === 'invocations') return await this.invoke(parts[1]!, req, res);
        if (parts[2] === 'labels') {
          const body = parseJson(await readBody(req), 'labels') as { labels?: unknown };
          return send(res, 200, await this.opts.log.ingestLabels(parts[1]!, body?.labels));
        }
      }
      if (parts[0] === 'admin') return await this.admin(req, res, parts.slice(1));
      throw new HttpError(404, `no such endpoint: ${req.method} ${url.pathname}`);
    } catch (err) {
      const status = statusOf(err);
      if (status === 500) this.opts.logger.error({ err, path: url.pathname }, 'gateway error');
      if (!res.headersSent) send(res, status, { error: err instanceof Error ? err.message : String(err) });
    }
  }

  private async invoke(model: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    const route = this.state.routes[model];
    if (!route) throw new NotFoundError(`unknown model ${model}: no route`);
    const body = await readBody(req);
    const parsed = parseJson(body, 'invocation');
    this.noteFeatures(model, parsed);
    const entityKey = stickyKeyOf(route.stickyKey, req.headers, parsed);
    const requestId =
      typeof req.headers['x-request-id'] === 'string' ? req.headers['x-request-id'] : randomUUID();
    const version = pickVersion(route.weights, `${model}:${entityKey ?? requestId}`);
    if (!version) throw new HttpError(503, `model ${model} has no version with traffic`);
    const answer = await this.call(model, version, body);
    const latencyMs = performance.now() - started;
    send(res, answer.status, answer.body, { 'x-promote-version': version, 'x-request-id': requestId });
    this.observe({ requestId, entityKey, model, version, role: 'primary', latencyMs, ...answer });
    // Mirroring happens after the primary response is sent, through a bounded queue.
    const shadow = route.shadow;
    if (shadow && shadow.version !== version && Math.random() < shadow.sampleRate)
      this.mirror(model, shadow.version, body, requestId, entityKey);
  }

  /** Calls a version's model server (with any injected fault); never throws. */
  private async call(
    model: string,
    version: string,
    body: Buffer,
  ): Promise<{ status: number; body: string; score: number | null }> {
    const backend = this.state.backends[model]?.[version];
    if (!backend)
      return {
        status: 503,
        body: JSON.stringify({ error: `${model}/${version} has no model server` }),
        score: null,
      };
    const fault = this.state.faults[model]?.[version];
    if (fault?.latencyMs) await new Promise((r) => setTimeout(r, fault.latencyMs));
    if (fault && Math.random() < fault.errorRate) {
      return {
        status: 503,
        body: JSON.stringify({ error: `injected fault on ${model}/${version}` }),
        score: null,
      };
    }
    try {
      const response = await fetch(`${backend}/invocations`, {
        method: 'POST',
        headers: { 'content-type': 'application/json' },
        body,
        signal: AbortSignal.timeout(this.opts.upstreamTimeoutMs ?? 10_000),
      });
      const text = await response.text();
      let score: number | null = null;
      if (response.ok) {
        const first = (JSON.parse(text) as { predictions?: unknown[] }).predictions?.[0];
        score = typeof first === 'number' ? first : null;
      }
      return { status: response.status, body: text, score };
    } catch (err) {
      return {
        status: 502,
        body: JSON.stringify({ error: `${model}/${version} did not answer: ${(err as Error).message}` }),
        score: null,
      };
    }
  }

  private observe(p: Omit<Prediction, 'decision' | 'atMs'> & { body?: string }): void {
    const labels = { model: p.model, version: p.version, role: p.role };
    this.requests.inc({ ...labels, code: String(p.status) });
    if (p.status >= 400) this.errors.inc(labels);
    this.latency.observe(labels, p.latencyMs / 1000);
    if (p.score !== null) this.scores.observe(labels, p.score);
    const t = this.state.policies[p.model]?.[p.version] ?? DEFAULT_THRESHOLDS;
    const decision =
      p.score === null ? null : p.score >= t.block ? 'block' : p.score >= t.review ? 'review' : 'allow';
    const row: Prediction = {
      requestId: p.requestId,
      entityKey: p.entityKey,
      model: p.model,
      version: p.version,
      role: p.role,
      score: p.score,
      decision,
      latencyMs: p.latencyMs,
      status: p.status,
      atMs: Date.now(),
    };
    this.opts.log
      .record([row])
      .catch((err: unknown) => this.opts.logger.error({ err }, 'prediction log write failed'));
  }

  /** Records the columns (and value types) requests carry, for the feature-schema gate. */
  private noteFeatures(model: string, body: unknown): void {
    const split = (body as { dataframe_split?: { columns?: unknown; data?: unknown[][] } } | null)
      ?.dataframe_split;
    if (!split || !Array.isArray(split.columns)) return;
    const known = (this.state.features[model] ??= {});
    let changed = false;
    split.columns.forEach((column, i) => {
      if (typeof column !== 'string' || known[column]) return;
      const value = split.data?.[0]?.[i];
      known[column] =
        typeof value === 'number'
          ? Number.isInteger(value)
            ? 'long'
            : 'double'
          : typeof value === 'boolean'
            ? 'boolean'
            : 'string';
      changed = true;
    });
    if (changed) this.save();
  }

  private mirror(
    model: string,
    version: string,
    body: Buffer,
    requestId: string,
    entityKey: string | null,
  ): void {
    if (this.queue.length >= (this.opts.mirrorQueue ?? 1000)) {
      this.shadowDrops.inc({ model, version });
      return;
    }
    this.queue.push(async () => {
      const started = performance.now();
      const answer = await this.call(model, version, body);
      this.observe({
        requestId,
        entityKey,
        model,
        version,
        role: 'shadow',
        latencyMs: performance.now() - started,
        ...answer,
      });
    });
    this.pump();
  }

  private pump(): void {
    while (this.inFlight < (this.opts.mirrorConcurrency ?? 4) && this.queue.length > 0) {
      const job = this.queue.shift()!;
      this.inFlight++;
      void job().finally(() => {
        this.inFlight--;
        this.pump();
      });
    }
  }

  // ---- admin API ----

  private async admin(req: IncomingMessage, res: ServerResponse, parts: string[]): Promise<void> {
    if (req.headers.authorization !== `Bearer ${this.opts.adminToken}`)
      throw new HttpError(401, 'admin API: missing or wrong bearer token');
    const [resource, model, version] = parts;
    const method = req.method ?? 'GET';
    if (method === 'GET' && resource === 'state') return send(res, 200, this.state);
    if (method === 'GET' && model && ['measure', 'pairs', 'labelled', 'features'].includes(resource ?? '')) {
      return send(res, 200, await this.read(resource!, model, version, url(req)));
    }
    if (method === 'GET' && model && ['measure', 'pairs', 'labelled', 'features'].includes(resource ?? '')) {
      return send(res, 200, await this.read(resource!, model, version, url(req)));
    }
    if (!model) throw new HttpError(404, `admin API: no such endpoint /admin/${parts.join('/')}`);
    const input =
      method === 'PUT'
        ? (parseJson(await readBody(req), `admin ${resource}`) as Record<string, unknown>)
        : {};
    if (resource === 'routes' && method === 'GET') {
      const route = this.state.routes[model];
      if (!route) throw new NotFoundError(`unknown model ${model}: no route`);
      return send(res, 200, route);
    }
    if (resource === 'routes' && method === 'PUT') return send(res, 200, await this.setRoute(model, input));
    if (!version) throw new HttpError(404, `admin API: /admin/${resource}/${model} needs a version`);
    if (resource === 'backends') {
      if (method === 'PUT') {
        if (typeof input.url !== 'string' || !/^https?:\/\//.test(input.url))
          throw new InvalidInputError('backends: url must be an http(s) URL');
        (this.state.backends[model] ??= {})[version] = input.url.replace(/\/$/, '');
      } else if (method === 'DELETE') {
        const route = this.state.routes[model];
        if (route && ((route.weights[version] ?? 0) > 0 || route.shadow?.version === version)) {
          throw new HttpError(409, `${model}/${version} still receives traffic; route it away first`);
        }
        delete this.state.backends[model]?.[version];
      }
    } else if (resource === 'faults') {
      if (method === 'PUT') {
        const latencyMs = Number(input.latencyMs ?? 0);
        const errorRate = Number(input.errorRate ?? 0);
        if (!(latencyMs >= 0 && latencyMs <= 60_000))
          throw new InvalidInputError('faults: latencyMs must be 0..60000');
        if (!(errorRate >= 0 && errorRate <= 1))
          throw new InvalidInputError('faults: errorRate must be 0..1');
        (this.state.faults[model] ??= {})[version] = { latencyMs, errorRate };
      } else if (method === 'DELETE') delete this.state.faults[model]?.[version];
    } else if (resource === 'policies') {
      if (method === 'PUT') {
        const { review, block } = input as Partial<Thresholds>;
        if (
          typeof review !== 'number' ||
          typeof block !== 'number' ||
          !(review >= 0 && review < block && block <= 1)
        ) {
          throw new InvalidInputError('policies: need numbers 0 <= review < block <= 1');
        }
        (this.state.policies[model] ??= {})[version] = { review, block };
      } else if (method === 'DELETE') delete this.state.policies[model]?.[version];
    } else throw new HttpError(404, `admin API: no such resource ${resource}`);
    this.save();
    send(res, 200, this.state);
  }

  /** Read endpoints for the providers: windows of the prediction log, and the observed features. */
  private async read(
    resource: string,
    model: string,
    version: string | undefined,
    q: URLSearchParams,
  ): Promise<unknown> {
    if (resource === 'features')
      return Object.entries(this.state.features[model] ?? {}).map(([name, type]) => ({ name, type }));
    const fromMs = Number(q.get('from') ?? 0);
    const toMs = Number(q.get('to') ?? Date.now());
    if (!Number.isFinite(fromMs) || !Number.isFinite(toMs))
      throw new InvalidInputError('from and to must be epoch milliseconds');
    if (resource === 'pairs') {
      const champion = q.get('champion');
      const candidate = q.get('candidate');
      if (!champion || !candidate) throw new InvalidInputError('pairs needs champion and candidate');
      return (await this.opts.log.pairs(model, champion, candidate, fromMs, toMs)).slice(0, 50_000);
    }
    if (!version) throw new InvalidInputError(`${resource} needs a version`);
    if (resource === 'labelled')
      return (await this.opts.log.labelled(model, version, fromMs, toMs)).slice(0, 50_000);
    return measureWindow(
      await this.opts.log.window(model, version, fromMs, toMs),
      q.get('metric') ?? 'error_rate',
      version,
      fromMs,
      toMs,
    );
  }

  /** Validates and applies a route; every version with traffic (and the shadow) must have a healthy server. */
  private async setRoute(model: string, input: Record<string, unknown>): Promise<GatewayRoute> {
    const weights = checkWeights(model, (input.weights ?? {}) as Record<string, unknown>);
    const shadowIn = input.shadow as { version?: unknown; sampleRate?: unknown } | null | undefined;
    let shadow: GatewayRoute['shadow'] = null;
    if (shadowIn) {
      const rate = Number(shadowIn.sampleRate ?? 1);
      if (typeof shadowIn.version !== 'string')
        throw new InvalidInputError('shadow.version must be a version');
      if (!(rate > 0 && rate <= 1)) throw new InvalidInputError('shadow.sampleRate must be in (0, 1]');
      shadow = { version: shadowIn.version, sampleRate: rate };
    }
    const stickyKey =
      typeof input.stickyKey === 'string'
        ? input.stickyKey
        : (this.state.routes[model]?.stickyKey ?? 'header:x-entity-id');
    if (!/^(header|field):.+$/.test(stickyKey))
      throw new InvalidInputError('stickyKey must be header:<name> or field:<name>');
    for (const version of [...Object.keys(weights), ...(shadow ? [shadow.version] : [])]) {
      const backend = this.state.backends[model]?.[version];
      if (!backend)
        throw new NotFoundError(`unknown version ${model}/${version}: no model server registered`);
      const healthy = await fetch(`${backend}/ping`, { signal: AbortSignal.timeout(2000) }).then(
        (r) => r.ok,
        () => false,
      );
      if (!healthy) throw new HttpError(503, `${model}/${version} has no healthy model server at ${backend}`);
    }
    const route = { weights, shadow, stickyKey };
    this.state.routes[model] = route;
    this.save();
    this.opts.logger.info({ model, weights, shadow }, 'route set');
    return route;
  }

  private save(): void {
    this.file.write(this.state);
  }
}
