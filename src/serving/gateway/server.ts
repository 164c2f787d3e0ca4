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
import { AdminApi } from './admin';
import {
  HttpError,
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
import { noteFeatures, sliceValuesOf, stickyKeyOf } from './traffic-input';
import { Upstream, type UpstreamAnswer } from './upstream';

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
  /** Mirrored requests in flight at once. Default 4. */
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
}

const DEFAULT_THRESHOLDS: Thresholds = { review: 0.5, block: 0.9 };
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
    this.store = new StateStore(opts.stateDir, Date.now());
    this.mirror = new Mirror(
      {
        maxQueue: opts.mirrorQueue ?? 1000,
        maxBytes: opts.mirrorQueueBytes ?? 32 << 20,
        concurrency: opts.mirrorConcurrency ?? 4,
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
    this.leases.start(this.opts.leaseCheckEveryMs ?? 1000);
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
        return sendJson(res, 200, { ok: true });
      }
      if (first === 'metrics' && n === 1) {
        if (req.method !== 'GET') throw methodNotAllowed(req.method, pathname, ['GET']);
        return sendText(res, 200, await this.metrics.metrics(), this.metrics.contentType);
      }
      if (first === 'models' && n === 3 && (action === 'invocations' || action === 'labels')) {
        if (req.method !== 'POST') throw methodNotAllowed(req.method, pathname, ['POST']);
        if (action === 'labels') return await this.labels(checkName(model!, 'model'), req, res);
        return await this.invoke(checkName(model!, 'model'), req, res);
      }
      if (first === 'admin')
        return await this.admin.handle(req, res, target.segments.slice(1), pathname, target.query);
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
    const m = this.routed(model);
    const requestId = randomUUID();
    const clientRequestId = clientText(req.headers['x-request-id']);
    const body = await readBody(req, this.maxBody);
    const parsed = parseJson(body, 'invocation');
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
    if (answer.status >= 200 && answer.status < 300 && noteFeatures(m.features, parsed))
      this.store.saveSoon((err) => this.opts.logger.error({ err }, 'could not save the gateway state'));
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
    if (!tokenMatches(bearerToken(req), this.opts.ingestToken))
      throw new HttpError(401, 'labels: missing or wrong bearer token (the ingest token)', {
        'www-authenticate': 'Bearer',
      });
    this.routed(model);
    const body = parseJson(await readBody(req, this.maxBody), 'labels');
    const labels =
      body && typeof body === 'object' && !Array.isArray(body) && Object.hasOwn(body, 'labels')
        ? (body as { labels: unknown }).labels
        : undefined;
    try {
      sendJson(res, 200, await this.opts.log.ingestLabels(model, labels));
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
        score: null,
      };
    const fault = m.faults.get(version);
    if (fault?.latencyMs) await new Promise((r) => setTimeout(r, fault.latencyMs));
    if (fault && Math.random() < fault.errorRate)
      return {
        status: 503,
        body: JSON.stringify({ error: `injected fault on ${model}/${version}` }),
        score: null,
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
    const labels = { model: p.model, version: p.version, role: p.role };
    this.instruments.requests.inc({ ...labels, code: String(answer.status) });
    if (answer.status >= 400) this.instruments.errors.inc(labels);
    this.instruments.latency.observe(labels, p.latencyMs / 1000);
    if (answer.score !== null) this.instruments.scores.observe(labels, answer.score);
    const t = this.store.get(p.model)?.policies.get(p.version) ?? DEFAULT_THRESHOLDS;
    const score = answer.score;
    const decision =
      score === null ? null : score >= t.block ? 'block' : score >= t.review ? 'review' : 'allow';
    this.opts.log.record([{ ...p, score, decision, status: answer.status, atMs: Date.now() }]);
  }
}
