/**
 * The gateway's Prometheus instruments, in a registry of its own (several gateways can share a
 * process in tests). Labels carry only names the gateway knows (routed models and versions, status
 * codes), never raw input, so a client cannot grow the series count.
 */
import { Counter, Gauge, Histogram, Registry } from 'prom-client';

/** The instruments of one (model, version, role), resolved once: no label hashing per request. */
export interface Series {
  requests(code: number): { inc(): void };
  errors: { inc(): void };
  latency: { observe(v: number): void };
  scores: { observe(v: number): void };
}

/** Series kept at most; beyond it they are resolved per call (labels stay bounded by the routes). */
const MAX_CACHED_SERIES = 10_000;
import type { PredictionLogStats } from './prediction-log';

export class GatewayInstruments {
  readonly registry = new Registry();
  readonly requests: Counter<'model' | 'version' | 'role' | 'code'>;
  readonly errors: Counter<'model' | 'version' | 'role'>;
  readonly latency: Histogram<'model' | 'version' | 'role'>;
  readonly scores: Histogram<'model' | 'version' | 'role'>;
  readonly shadowDrops: Counter<'model' | 'version'>;
  readonly rejected: Counter<'code'>;
  readonly leaseExpired: Counter<'model'>;
  readonly uncaught: Counter<'kind'>;
  private readonly cache = new Map<string, Series>();

  /** The instruments of a (model, version, role); names are the gateway's own (checked names). */
  series(model: string, version: string, role: string): Series {
    const key = `${model}\u0000${version}\u0000${role}`;
    let s = this.cache.get(key);
    if (s) return s;
    const labels = { model, version, role };
    const codes = new Map<number, { inc(): void }>();
    s = {
      requests: (code) => {
        let c = codes.get(code);
        if (!c) codes.set(code, (c = this.requests.labels({ ...labels, code: String(code) })));
        return c;
      },
      errors: this.errors.labels(labels),
      latency: this.latency.labels(labels),
      scores: this.scores.labels(labels),
    };
    if (this.cache.size < MAX_CACHED_SERIES) this.cache.set(key, s);
    return s;
  }

  constructor(sources: {
    mirror: () => { depth: number; bytes: number };
    predictionLog: () => PredictionLogStats;
  }) {
    const registers = [this.registry];
    const labelNames = ['model', 'version', 'role'] as const;
    this.requests = new Counter({
      name: 'promote_gateway_requests_total',
      help: 'Requests by version, role and HTTP status code',
      labelNames: [...labelNames, 'code'],
      registers,
    });
    this.errors = new Counter({
      name: 'promote_gateway_errors_total',
      help: 'Failed requests (HTTP status >= 400, or no answer from the model server)',
      labelNames,
      registers,
    });
    this.latency = new Histogram({
      name: 'promote_gateway_request_duration_seconds',
      help: 'Request latency through the gateway, seconds',
      labelNames,
      buckets: [0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5],
      registers,
    });
    this.scores = new Histogram({
      name: 'promote_gateway_score',
      help: 'Model scores (first prediction of each request)',
      labelNames,
      buckets: [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 1],
      registers,
    });
    this.shadowDrops = new Counter({
      name: 'promote_gateway_shadow_dropped_total',
      help: 'Mirrored requests dropped because the mirror queue was full (by count or bytes)',
      labelNames: ['model', 'version'],
      registers,
    });
    this.rejected = new Counter({
      name: 'promote_gateway_rejected_requests_total',
      help: 'Requests the gateway refused itself (bad input, unknown model, wrong token...), by status code',
      labelNames: ['code'],
      registers,
    });
    this.leaseExpired = new Counter({
      name: 'promote_gateway_lease_expired_total',
      help: 'Traffic leases that expired, sending all traffic back to the champion',
      labelNames: ['model'],
      registers,
    });
    this.uncaught = new Counter({
      name: 'promote_gateway_uncaught_errors_total',
      help: 'Errors that reached the last-resort handlers (a bug: the gateway kept serving)',
      labelNames: ['kind'],
      registers,
    });
    new Gauge({
      name: 'promote_gateway_shadow_queue_depth',
      help: 'Mirrored requests waiting',
      registers,
      collect() {
        this.set(sources.mirror().depth);
      },
    });
    new Gauge({
      name: 'promote_gateway_shadow_queue_bytes',
      help: 'Bytes of mirrored request bodies waiting',
      registers,
      collect() {
        this.set(sources.mirror().bytes);
      },
    });
    new Gauge({
      name: 'promote_gateway_prediction_log_buffered',
      help: 'Predictions waiting to be written to the prediction log',
      registers,
      collect() {
        this.set(sources.predictionLog().buffered);
      },
    });
    new Counter({
      name: 'promote_gateway_prediction_log_dropped_total',
      help: 'Predictions not logged because the write buffer was full (the store was down or slow)',
      registers,
      collect() {
        // The log counts since start; a counter set from a monotonic source stays a counter.
        this.reset();
        this.inc(sources.predictionLog().dropped);
      },
    });
    new Counter({
      name: 'promote_gateway_prediction_log_pruned_total',
      help: 'Predictions deleted by retention',
      registers,
      collect() {
        this.reset();
        this.inc(sources.predictionLog().pruned);
      },
    });
  }
}
