/**
 * In-process traffic and measurements. The driver sends synthetic requests through the plane's
 * current route (sticky by entity key, mirrored to the shadow version at its sample rate) and each
 * version answers according to its Behaviour; the observations are kept per second and measured
 * over windows like a metrics backend would. Labels for each request arrive after a delay.
 */
import type { ScorePair } from '../../analysis/shadow';
import { labelMeasurement } from '../../analysis/labels';
import { quantile } from '../../analysis/stats';
import type { Measurement } from '../../analysis/types';
import type { MetricsSource, WindowQuery } from '../types';
import type { InProcessPlane } from './plane';
import { pickVersion } from '../../serving/gateway/routing';
import { gaussian, seededRandom } from './random';

interface Bucket {
  sec: number;
  requests: number;
  errors: number;
  /** Latencies of the bucket's requests (at most LATENCY_CAP kept, evenly thinned). */
  latencies: number[];
}

interface Labelled {
  atMs: number;
  labelAtMs: number;
  model: string;
  version: string;
  score: number;
  label: number;
}

const LATENCY_CAP = 200;
const MAX_SECONDS = 6 * 3600;
const MAX_PAIRS = 50_000;
const MAX_LABELLED = 100_000;

export class InProcessMetrics implements MetricsSource {
  private readonly buckets = new Map<string, Bucket[]>();
  private readonly pairs: {
    atMs: number;
    model: string;
    champion: string;
    candidate: string;
    pair: ScorePair;
  }[] = [];
  private readonly labelled: Labelled[] = [];

  observe(model: string, version: string, atMs: number, latencyMs: number, failed: boolean): void {
    const key = `${model}/${version}`;
    const list = this.buckets.get(key) ?? [];
    if (!this.buckets.has(key)) this.buckets.set(key, list);
    const sec = Math.floor(atMs / 1000);
    let bucket = list[list.length - 1];
    if (!bucket || bucket.sec !== sec) {
      bucket = { sec, requests: 0, errors: 0, latencies: [] };
      list.push(bucket);
      if (list.length > MAX_SECONDS) list.shift();
    }
    bucket.requests++;
    if (failed) bucket.errors++;
    if (bucket.latencies.length < LATENCY_CAP) bucket.latencies.push(latencyMs);
  }

  observePair(atMs: number, model: string, champion: string, candidate: string, pair: ScorePair): void {
    this.pairs.push({ atMs, model, champion, candidate, pair });
    if (this.pairs.length > MAX_PAIRS) this.pairs.shift();
  }

  observePrediction(entry: Labelled): void {
    this.labelled.push(entry);
    if (this.labelled.length > MAX_LABELLED) this.labelled.shift();
  }

  measure(q: WindowQuery & { metric: string }): Promise<Measurement> {
    const from = Math.floor(q.fromMs / 1000);
    const to = Math.floor(q.toMs / 1000);
    const inWindow = (this.buckets.get(`${q.model}/${q.version}`) ?? []).filter(
      (b) => b.sec >= from && b.sec <= to,
    );
    const requests = inWindow.reduce((n, b) => n + b.requests, 0);
    const errors = inWindow.reduce((n, b) => n + b.errors, 0);
    const base = {
      metric: q.metric,
      version: q.version,
      samples: requests,
      phase: 'Ok' as const,
      fromMs: q.fromMs,
      toMs: q.toMs,
    };
    if (requests === 0) return Promise.resolve({ ...base, value: null });
    if (q.metric === 'error_rate')
      return Promise.resolve({ ...base, value: errors / requests, events: errors });
    const match = /^latency_p(\d+)_ms$/.exec(q.metric);
    if (match) {
      const latencies = inWindow.flatMap((b) => b.latencies);
      return Promise.resolve({ ...base, value: quantile(latencies, Number(match[1]) / 100) });
    }
    return Promise.resolve({
      ...base,
      value: null,
      samples: 0,
      phase: 'Error',
      error: `metric ${q.metric} is not measured in-process`,
    });
  }

  shadowPairs(q: {
    model: string;
    champion: string;
    candidate: string;
    fromMs: number;
    toMs: number;
  }): Promise<ScorePair[]> {
    return Promise.resolve(
      this.pairs
        .filter(
          (p) =>
            p.model === q.model &&
            p.champion === q.champion &&
            p.candidate === q.candidate &&
            p.atMs >= q.fromMs &&
            p.atMs <= q.toMs,
        )
        .map((p) => p.pair),
    );
  }

  /** Labels visible by `toMs` for predictions made by the version in the window. */
  labelMetric(q: WindowQuery & { metric: string }): Promise<Measurement> {
    const rows = this.labelled.filter(
      (r) =>
        r.model === q.model &&
        r.version === q.version &&
        r.atMs >= q.fromMs &&
        r.atMs <= q.toMs &&
        r.labelAtMs <= q.toMs,
    );
    return Promise.resolve(labelMeasurement(rows, q));
  }
}

export interface DriverOptions {
  /** Requests per second per model. */
  ratePerSec: number;
  /** Delay before a request's true label is known, ms. Default 0. */
  labelDelayMs?: number;
  /** Distinct entity keys the traffic is drawn from. Default 5000. */
  entities?: number;
  /** Tick length, ms. Default 100. */
  tickMs?: number;
}

/** Sends synthetic requests through the plane's routes on a timer until stopped. */
export class TrafficDriver {
  private timer: NodeJS.Timeout | null = null;
  private carry = 0;
  private readonly rand = seededRandom('traffic');

  constructor(
    private readonly plane: InProcessPlane,
    private readonly metrics: InProcessMetrics,
    private readonly options: DriverOptions,
  ) {}

  start(): this {
    const tick = this.options.tickMs ?? 100;
    this.timer = setInterval(() => this.tick(tick), tick);
    this.timer.unref();
    return this;
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = null;
  }

  /** Sends the requests due in one tick to every routed model. */
  tick(tickMs: number): void {
    this.carry += (this.options.ratePerSec * tickMs) / 1000;
    const count = Math.floor(this.carry);
    this.carry -= count;
    const now = Date.now();
    for (const model of this.plane.models()) {
      const route = this.plane.routeNow(model);
      if (!route) continue;
      for (let i = 0; i < count; i++) this.request(model, route, now);
    }
  }

  private request(
    model: string,
    route: NonNullable<ReturnType<InProcessPlane['routeNow']>>,
    now: number,
  ): void {
    const entity = `e${Math.floor(this.rand() * (this.options.entities ?? 5000))}`;
    // The gateway's own sticky assignment, so the simulation routes exactly as the real plane does.
    const served = pickVersion(route.weights, `${model}:${entity}`);
    if (!served) return;
    const primary = this.answer(model, served, entity, now);
    if (primary.score !== null) {
      this.metrics.observePrediction({
        atMs: now,
        labelAtMs: now + (this.options.labelDelayMs ?? 0),
        model,
        version: served,
        score: primary.score,
        label: trueLabel(entity),
      });
    }
    const shadow = route.shadow;
    if (shadow && shadow.version !== served && this.rand() < shadow.sampleRate) {
      const mirrored = this.answer(model, shadow.version, entity, now);
      if (primary.score !== null && mirrored.score !== null) {
        this.metrics.observePair(now, model, served, shadow.version, {
          champion: primary.score,
          candidate: mirrored.score,
        });
      }
    }
  }

  private answer(model: string, version: string, entity: string, now: number): { score: number | null } {
    if (!this.plane.isDeployed(model, version)) {
      this.metrics.observe(model, version, now, 0, true);
      return { score: null };
    }
    const b = this.plane.versionRecord(model, version).behaviour;
    const latency = b.latencyMs + this.rand() * b.latencyJitterMs;
    const failed = this.rand() < b.errorRate;
    this.metrics.observe(model, version, now, latency, failed);
    if (failed) return { score: null };
    // Per-version noise on the entity's score: versions disagree a little even when equally good.
    const noise = 0.5 * gaussian(seededRandom(`${version}:${entity}`));
    const logit = b.signal * latent(entity) + b.scoreShift + noise;
    return { score: 1 / (1 + Math.exp(-logit)) };
  }
}

/** A fixed hidden feature of an entity: what a good model picks up. */
function latent(entity: string): number {
  return gaussian(seededRandom(`latent:${entity}`));
}

/** The entity's true label, drawn once from its latent feature. */
function trueLabel(entity: string): number {
  const p = 1 / (1 + Math.exp(-(2 * latent(entity) - 1)));
  return seededRandom(`label:${entity}`)() < p ? 1 : 0;
}
