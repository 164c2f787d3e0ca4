/**
 * The gateway: one inference endpoint in front of the model servers. Weighted sticky routing,
 * sampled shadow mirroring that never waits on the primary path, per-version Prometheus metrics,
 * the prediction log, label ingestion (ingest token), and the admin API (admin token) whose state
 * is persisted. Every request is parsed inside error handling (http.ts): hostile input gets a 4xx
 * JSON answer and the process keeps serving.
 */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { Registry } from 'prom-client';
import { NotFoundError } from '../../common/errors';
import type { Logger } from '../../common/logger';
import { AdminApi, readAdminCall, type AdminCall } from './admin';
import {
  HttpError,
  RawJson,
  answerClientError,
  bearerToken,
  checkName,
  errorAnswer,
  methodNotAllowed,
  parseJson,
  parseTarget,
  quote,
  readBody,
  sendJson,
  sendText,
  tokenMatches,
} from './http';
import { Leases } from './leases';
import { GatewayInstruments } from './metrics';
import { Mirror } from './mirror';
import { PredictionLogUnavailable, type Prediction, type PredictionLog } from './prediction-log';
import { pickVersion } from './routing';
import { StateStore, type GatewayState, type ModelState, type Thresholds } from './state';
import {
  FEATURE_TYPES,
  MAX_FEATURES,
  MAX_FEATURE_NAME,
  noteFeatures,
  sliceValuesOf,
  stickyKeyOf,
} from './traffic-input';
import { Upstream, firstScore, type UpstreamAnswer } from './upstream';

export type { Fault, GatewayRoute, GatewayState, Thresholds } from './state';
export { stickyKeyOf } from './traffic-input';

export interface GatewayOptions {
  stateDir: string;
  log: PredictionLog;
  /** Bearer token of the admin API. */
  adminToken: string;
  /** Bearer token of the labels endpoint (must differ from the admin token). */
  ingestToken: string;
  logger: Logger;
  /** Mirrored requests waiting at most; beyond it they are dropped and counted. Default 1000. */
  mirrorQueue?: number;
  /** Bytes of mirrored bodies waiting at most; beyond it they are dropped and counted. Default 32 MiB. */
  mirrorQueueBytes?: number;
  /**
   * Mirrored requests in flight at once (and connections per shadow server). Default 128: enough for
   * a shadow answering in 100 ms at 1,000 mirrored requests/s.
   */
  mirrorConcurrency?: number;
  /** Upstream timeout, ms. Default 10000. */
  upstreamTimeoutMs?: number;
  /** Largest request body, bytes (invocations and label batches). Default 1 MiB. */
  maxBodyBytes?: number;
  /** Time a client has to send its headers, ms. Default 10000. */
  headersTimeoutMs?: number;
  /** Time a client has to send its whole request, ms. Default 30000. */
  requestTimeoutMs?: number;
  /** How often leases are checked for expiry, ms. Default 1000. */
  leaseCheckEveryMs?: number;
  /**
   * Requests waiting on model servers at most; beyond it the gateway answers 503 at once instead of
   * queueing bodies in memory behind a stalled server. Default 2048.
   */
  maxInFlight?: number;
  /** Client connections at most. Default 8192. */
  maxConnections?: number;
  /**
   * Set in a worker process of the multi-process gateway (cluster/): the state is a replica its
   * primary keeps current (`applyState`), and admin calls, labels and metrics are answered by the
   * primary. `stateDir` is then unused and `log` only records.
   */
  primary?: PrimaryLink;
  /** This worker's number (1..N), answered by /health so an operator can tell the processes apart. */
  worker?: number;
}

/** An answer made elsewhere (by the primary process), sent as it is. */
export interface Answer {
  status: number;
  headers: Record<string, string>;
  /** The JSON (or, for metrics, text) body. */
  payload: string;
}

/** What a worker asks its primary process (src/serving/gateway/cluster). */
export interface PrimaryLink {
  admin(call: AdminCall): Promise<Answer>;
  labels(model: string, token: string | null, body: string): Promise<Answer>;
  metrics(): Promise<Answer>;
  /** Columns this worker has seen for a model (the primary keeps the union and persists it). */
  features(model: string, columns: Array<[string, string]>): void;
}

const DEFAULT_THRESHOLDS: Thresholds = { review: 0.5, block: 0.9 };

function checkIngestToken(token: string | null, expected: string): void {
  if (!tokenMatches(token, expected))
    throw new HttpError(401, 'labels: missing or wrong bearer token (the ingest token)', {
      'www-authenticate': 'Bearer',
    });
}

function sendAnswer(res: ServerResponse, answer: Answer): void {
  if (answer.headers['content-type'] && answer.headers['content-type'] !== 'application/json')
    return sendText(res, answer.status, answer.payload, answer.headers['content-type']);
  sendJson(res, answer.status, answer.payload, answer.headers);
}
/** A client's own request id or entity key is kept up to this many characters. */
const MAX_CLIENT_TEXT = 200;

const clientText = (v: string | string[] | undefined): string | null =>
  typeof v === 'string' && v !== '' ? v.slice(0, MAX_CLIENT_TEXT) : null;

export class Gateway {
  private readonly store: StateStore;
  private readonly instruments: GatewayInstruments;
  private readonly leases: Leases;
  private readonly upstream: Upstream;
  private readonly mirror: Mirror;
  private readonly admin: AdminApi;
  private readonly maxBody: number;
  private server: Server | null = null;
  private inFlight = 0;

  constructor(private readonly opts: GatewayOptions) {
    if (!opts.adminToken || !opts.ingestToken)
      throw new Error('the gateway needs an admin token and an ingest token');
    if (opts.adminToken === opts.ingestToken)
      throw new Error(
        'the ingest token must differ from the admin token (a label source must not change routes)',
      );
    this.maxBody = opts.maxBodyBytes ?? 1 << 20;
    this.store = new StateStore(opts.primary ? null : opts.stateDir, Date.now());
    this.mirror = new Mirror(
      {
        maxQueue: opts.mirrorQueue ?? 1000,
        maxBytes: opts.mirrorQueueBytes ?? 32 << 20,
        concurrency: opts.mirrorConcurrency ?? 128,
        timeoutMs: opts.upstreamTimeoutMs ?? 10_000,
      },
      {
        onDrop: (job) => this.instruments.shadowDrops.inc({ model: job.model, version: job.version }),
        onError: (err) => opts.logger.error({ err }, 'mirrored request failed'),
      },
    );
    this.instruments = new GatewayInstruments({
      mirror: () => ({ depth: this.mirror.depth, bytes: this.mirror.bytes }),
      predictionLog: () => opts.log.stats(),
    });
    this.upstream = new Upstream({ timeoutMs: opts.upstreamTimeoutMs ?? 10_000, maxSockets: 256 });
    this.leases = new Leases(this.store, this.instruments, opts.logger);
    this.admin = new AdminApi({
      token: opts.adminToken,
      store: this.store,
      leases: this.leases,
      log: opts.log,
      upstream: this.upstream,
      logger: opts.logger,
    });
  }

  /** The Prometheus registry (also served at /metrics). */
  get metrics(): Registry {
    return this.instruments.registry;
  }

  /** Merges columns a worker saw into the model's features (bounded, checked), saved soon. */
  noteColumns(model: string, columns: unknown): void {
    const m = this.store.get(model);
    if (!m || !Array.isArray(columns)) return;
    let changed = false;
    for (const c of columns.slice(0, MAX_FEATURES)) {
      if (m.features.size >= MAX_FEATURES) break;
      if (!Array.isArray(c) || typeof c[0] !== 'string' || typeof c[1] !== 'string') continue;
      const [name, type] = c as [string, string];
      if (name === '' || name.length > MAX_FEATURE_NAME || !FEATURE_TYPES.has(type) || m.features.has(name))
        continue;
      m.features.set(name, type);
      changed = true;
    }
    if (changed)
      this.store.saveSoon((err) => this.opts.logger.error({ err }, 'could not save the gateway state'));
  }

  /** Replaces a worker's replica of the state with its primary's. */
  applyState(state: unknown): void {
    this.store.replace(state);
  }

  /** The number of state changes so far, and a hook called after each (the primary broadcasts). */
  get stateVersion(): number {
    return this.store.version;
  }

  onStateChange(listener: () => void): void {
    this.store.onSave = listener;
  }

  /** Starts expiring leases (listen does it; a primary process that does not listen calls this). */
  startLeases(): void {
    this.leases.start(this.opts.leaseCheckEveryMs ?? 1000);
  }

  /** Answers an admin call as data (the primary answering a worker). Never throws. */
  async answerAdmin(call: AdminCall): Promise<Answer> {
    return this.answered(() => this.admin.respond(call), call.pathname);
  }

  /** Answers a labels batch as data (the primary answering a worker). Never throws. */
  async answerLabels(model: string, token: string | null, body: string): Promise<Answer> {
    return this.answered(() => this.ingest(model, token, Buffer.from(body, 'utf8')), `labels of ${model}`);
  }

  private async answered(work: () => Promise<unknown>, what: string): Promise<Answer> {
    try {
      const value = await work();
      const payload = value instanceof RawJson ? value.bytes.toString('utf8') : JSON.stringify(value);
      return { status: 200, headers: {}, payload };
    } catch (err) {
      const answer = errorAnswer(err);
      if (answer.status === 500) this.opts.logger.error({ err, what: what.slice(0, 200) }, 'gateway error');
      else this.instruments.rejected.inc({ code: String(answer.status) });
      return { status: answer.status, headers: answer.headers, payload: JSON.stringify(answer.body) };
    }
  }

  /** Counts an error that reached a last-resort handler (see main.ts). */
  countUncaught(kind: 'exception' | 'rejection'): void {
    this.instruments.uncaught.inc({ kind });
  }

  /** The state as GET /admin/state answers it (a copy). */
  snapshot(): GatewayState {
    return JSON.parse(JSON.stringify(this.store.toJSON())) as GatewayState;
  }

  async listen(port: number, host = '127.0.0.1'): Promise<{ url: string }> {
    const requestTimeout = this.opts.requestTimeoutMs ?? 30_000;
    const server = createServer(
      {
        headersTimeout: Math.min(this.opts.headersTimeoutMs ?? 10_000, requestTimeout),
        requestTimeout,
        // How often Node looks for clients past those timeouts (its default is 30s).
        connectionsCheckingInterval: Math.max(100, Math.min(1000, requestTimeout / 4)),
      },
      (req, res) => {
        this.handle(req, res).catch((err: unknown) => {
          this.opts.logger.error({ err }, 'gateway request handler failed');
          res.destroy();
        });
      },
    );
    server.keepAliveTimeout = 65_000;
    server.maxConnections = this.opts.maxConnections ?? 8192;
    server.on('clientError', (err: NodeJS.ErrnoException, socket) => {
      const status = answerClientError(err, socket as import('node:net').Socket);
      if (status !== null) this.instruments.rejected.inc({ code: String(status) });
    });
    // Node answers an Expect other than 100-continue with a bare 417; keep every answer JSON.
    server.on('checkExpectation', (req: IncomingMessage, res: ServerResponse) => {
      this.instruments.rejected.inc({ code: '417' });
      sendJson(res, 417, { error: `expectation ${quote(String(req.headers.expect))} is not supported` });
    });
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(port, host, () => {
        server.off('error', reject);
        resolve();
      });
    });
    // A listener error after start (e.g. out of file descriptors) is logged, never an uncaught throw.
    server.on('error', (err) => this.opts.logger.error({ err }, 'gateway listener error'));
    if (!this.opts.primary) this.startLeases();
    const address = server.address();
    const actual = typeof address === 'object' && address ? address.port : port;
    return { url: `http://${host}:${actual}` };
  }

  /** Stops accepting requests and lets queued mirror calls finish (at most `drainMs`, default 5s). */
  async close(drainMs = 5000): Promise<void> {
    this.leases.stop();
    // Keep-alive connections would hold server.close() open for as long as clients keep sending:
    // close them now, then wait for the listener to go.
    const server = this.server;
    const closed = new Promise<void>((resolve) => (server ? server.close(() => resolve()) : resolve()));
    server?.closeAllConnections();
    await closed;
    const deadline = Date.now() + drainMs;
    while (this.mirror.busy && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    this.mirror.destroy();
    this.upstream.destroy();
    this.store.flush();
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    let pathname = '';
    try {
      const target = parseTarget(req.url);
      pathname = target.pathname;
      const [first, model, action] = target.segments;
      const n = target.segments.length;
      if (first === 'health' && n === 1) {
        if (req.method !== 'GET' && req.method !== 'HEAD')
          throw methodNotAllowed(req.method, pathname, ['GET', 'HEAD']);
        return sendJson(res, 200, this.opts.worker ? { ok: true, worker: this.opts.worker } : { ok: true });
      }
      if (first === 'metrics' && n === 1) {
        if (req.method !== 'GET') throw methodNotAllowed(req.method, pathname, ['GET']);
        if (this.opts.primary) return sendAnswer(res, await this.opts.primary.metrics());
        return sendText(res, 200, await this.metrics.metrics(), this.metrics.contentType);
      }
      if (first === 'models' && n === 3 && (action === 'invocations' || action === 'labels')) {
        if (req.method !== 'POST') throw methodNotAllowed(req.method, pathname, ['POST']);
        if (action === 'labels') return await this.labels(checkName(model!, 'model'), req, res);
        return await this.invoke(checkName(model!, 'model'), req, res);
      }
      if (first === 'admin') {
        if (!this.opts.primary)
          return await this.admin.handle(req, res, target.segments.slice(1), pathname, target.query);
        const segments = target.segments.slice(1);
        const call = await readAdminCall(req, this.opts.adminToken, segments, pathname, target.query);
        return sendAnswer(res, await this.opts.primary.admin(call));
      }
      throw new HttpError(404, `no such endpoint: ${quote(req.method ?? '')} ${quote(pathname)}`);
    } catch (err) {
      const answer = errorAnswer(err);
      if (answer.status === 500)
        this.opts.logger.error({ err, method: req.method, path: pathname.slice(0, 200) }, 'gateway error');
      else this.instruments.rejected.inc({ code: String(answer.status) });
      if (res.headersSent) res.destroy();
      else sendJson(res, answer.status, answer.body, answer.headers);
    }
  }

  /** The model's state if it has a route (404 otherwise: unknown models are never created by traffic). */
  private routed(model: string): ModelState & { route: NonNullable<ModelState['route']> } {
    const m = this.store.get(model);
    if (!m?.route) throw new NotFoundError(`unknown model ${model}: no route`);
    return m as ModelState & { route: NonNullable<ModelState['route']> };
  }

  private async invoke(model: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const started = performance.now();
    this.routed(model); // an unknown model's body is never read
    const requestId = randomUUID();
    const clientRequestId = clientText(req.headers['x-request-id']);
    const body = await readBody(req, this.maxBody);
    const parsed = parseJson(body, 'invocation');
    // The route as it is now, after the body: a client sending its body slowly must not be routed
    // by weights a rollback (or an expired lease) has replaced meanwhile. A worker's replica
    // replaces its model objects on every change, so the model is looked up again here.
    const m = this.routed(model);
    const route = m.route;
    const entityKey = stickyKeyOf(route.stickyKey, req.headers, parsed, MAX_CLIENT_TEXT);
    const version = pickVersion(route.weights, `${model}:${entityKey ?? requestId}`);
    if (!version) throw new HttpError(503, `model ${model} has no version with traffic`);
    if (this.inFlight >= (this.opts.maxInFlight ?? 2048))
      throw new HttpError(
        503,
        `the gateway has ${this.inFlight} requests waiting on model servers; try again`,
        {
          'retry-after': '1',
        },
      );
    this.inFlight++;
    let answer: UpstreamAnswer;
    try {
      answer = await this.call(m, model, version, body, this.upstream);
    } finally {
      this.inFlight--;
    }
    const latencyMs = performance.now() - started;
    sendJson(res, answer.status, answer.body, { 'x-promote-version': version, 'x-request-id': requestId });
    const slices = route.sliceKeys.length > 0 ? sliceValuesOf(route.sliceKeys, req.headers, parsed) : null;
    const ids = { requestId, clientRequestId, entityKey, model, slices };
    this.observe({ ...ids, version, role: 'primary', latencyMs }, answer);
    if (answer.status >= 200 && answer.status < 300 && noteFeatures(m.features, parsed)) {
      if (this.opts.primary) this.opts.primary.features(model, [...m.features]);
      else this.store.saveSoon((err) => this.opts.logger.error({ err }, 'could not save the gateway state'));
    }
    // Mirroring happens after the primary answer is sent, through a bounded queue.
    const shadow = route.shadow;
    if (shadow && shadow.version !== version && Math.random() < shadow.sampleRate)
      this.mirror.push({
        model,
        version: shadow.version,
        bytes: body.length,
        run: async (upstream) => {
          const t = performance.now();
          const mirrored = await this.call(m, model, shadow.version, body, upstream);
          this.observe(
            { ...ids, version: shadow.version, role: 'shadow', latencyMs: performance.now() - t },
            mirrored,
          );
        },
      });
  }

  private async labels(model: string, req: IncomingMessage, res: ServerResponse): Promise<void> {
    const token = bearerToken(req);
    checkIngestToken(token, this.opts.ingestToken);
    this.routed(model);
    const body = await readBody(req, this.maxBody);
    if (this.opts.primary)
      return sendAnswer(res, await this.opts.primary.labels(model, token, body.toString('utf8')));
    sendJson(res, 200, await this.ingest(model, token, body));
  }

  private async ingest(model: string, token: string | null, raw: Buffer): Promise<unknown> {
    checkIngestToken(token, this.opts.ingestToken);
    this.routed(model);
    const body = parseJson(raw, 'labels');
    const labels =
      body && typeof body === 'object' && !Array.isArray(body) && Object.hasOwn(body, 'labels')
        ? (body as { labels: unknown }).labels
        : undefined;
    try {
      return await this.opts.log.ingestLabels(model, labels);
    } catch (err) {
      if (err instanceof PredictionLogUnavailable) throw new HttpError(503, err.message);
      throw err;
    }
  }

  /** Calls a version's model server (with any injected fault); never throws. */
  private async call(
    m: ModelState,
    model: string,
    version: string,
    body: Buffer,
    upstream: Upstream,
  ): Promise<UpstreamAnswer> {
    const backend = m.backends.get(version);
    if (!backend)
      return {
        status: 503,
        body: JSON.stringify({ error: `${model}/${version} has no model server` }),
      };
    const fault = m.faults.get(version);
    if (fault?.latencyMs) await new Promise((r) => setTimeout(r, fault.latencyMs));
    if (fault && Math.random() < fault.errorRate)
      return {
        status: 503,
        body: JSON.stringify({ error: `injected fault on ${model}/${version}` }),
      };
    return upstream.invoke(backend, body, `${model}/${version}`);
  }

  private observe(
    p: Pick<
      Prediction,
      'requestId' | 'clientRequestId' | 'entityKey' | 'model' | 'version' | 'role' | 'latencyMs' | 'slices'
    >,
    answer: UpstreamAnswer,
  ): void {
    const series = this.instruments.series(p.model, p.version, p.role);
    series.requests(answer.status).inc();
    if (answer.status >= 400) series.errors.inc();
    series.latency.observe(p.latencyMs / 1000);
    const score = firstScore(answer);
    if (score !== null) series.scores.observe(score);
    const t = this.store.get(p.model)?.policies.get(p.version) ?? DEFAULT_THRESHOLDS;
    const decision =
      score === null ? null : score >= t.block ? 'block' : score >= t.review ? 'review' : 'allow';
    this.opts.log.record([{ ...p, score, decision, status: answer.status, atMs: Date.now() }]);
  }
}
