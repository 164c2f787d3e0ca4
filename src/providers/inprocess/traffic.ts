/**
 * In-process traffic and measurements. The driver sends synthetic requests through the plane's
 * current route (sticky by entity key, mirrored to the shadow version at its sample rate) and each
 * version answers according to its Behaviour; the observations are kept per tick and measured
 * over windows like a metrics backend would. Labels for each request arrive after a delay.
 */
import type { LabelledPrediction } from '../../analysis/labels';
import type { ScorePair } from '../../analysis/shadow';
import type { WindowCounts } from '../../analysis/types';
import { LATENCY_BOUNDS_MS, latencyBucket } from '../../serving/gateway/prediction-log/types';
import {
  MAX_LABELLED_ROWS,
  type MetricsSource,
  type SliceValue,
  type SliceValuesQuery,
  type WindowQuery,
} from '../types';
import type { InProcessPlane } from './plane';
import { pickVersion } from '../../serving/gateway/routing';
import { gaussian, seededRandom } from './random';

/** The requests of one driver tick (they share one time). */
interface Bucket {
  atMs: number;
  requests: number;
  errors: number;
  /** Latency histogram of the bucket's requests: LATENCY_EDGES_MS bucket -> count. */
  bins: Map<number, number>;
  maxMs: number;
}

interface Labelled {
  atMs: number;
  labelAtMs: number;
  model: string;
  version: string;
  score: number;
  label: number;
  slices?: Record<string, string> | null;
}

/** Countries of the synthetic traffic and their shares: each entity belongs to one. */
export const COUNTRIES: readonly [string, number][] = [
  ['US', 0.4],
  ['DE', 0.25],
  ['FR', 0.15],
  ['GB', 0.12],
  ['JP', 0.08],
];

/** The keys under which a synthetic request carries its country (a body field and a header). */
export const COUNTRY_KEYS: readonly string[] = ['field:country', 'header:x-country'];

/** The country of an entity: fixed, drawn once by the COUNTRIES shares. */
export function countryOf(entity: string): string {
  let u = seededRandom(`country:${entity}`)();
  for (const [country, share] of COUNTRIES) {
    if (u < share) return country;
    u -= share;
  }
  return COUNTRIES[COUNTRIES.length - 1]![0];
}

/** A synthetic request's values of the route's slice keys (only the country keys have one). */
function slicesOf(keys: readonly string[] | undefined, country: string): Record<string, string> | null {
  const found = (keys ?? []).filter((k) => COUNTRY_KEYS.includes(k));
  return found.length === 0 ? null : Object.fromEntries(found.map((k) => [k, country]));
}

const sliceListKey = (model: string, version: string, key: string, value: string) =>
  `${model}/${version}\u0000${key}\u0000${value}`;

/** Ticks kept per version (100 ms ticks: three hours). */
const MAX_BUCKETS = 3 * 36_000;
const MAX_PAIRS = 50_000;
const MAX_LABELLED = 100_000;

/**
 * Keeps the newest `max` entries. Trims a tenth at a time: shifting one entry off a full array on
 * every request would move the whole array each time (at 1000 requests/s, 10^8 moves a second).
 */
function trim<T>(list: T[], max: number): void {
  if (list.length > max + Math.ceil(max / 10)) list.splice(0, list.length - max);
}

export class InProcessMetrics implements MetricsSource {
  private readonly buckets = new Map<string, Bucket[]>();
  private readonly pairs: {
    atMs: number;
    model: string;
    champion: string;
    candidate: string;
    pair: ScorePair;
  }[] = [];
  private readonly labelledRows: Labelled[] = [];

  observe(
    model: string,
    version: string,
    atMs: number,
    latencyMs: number,
    failed: boolean,
    slices: Record<string, string> | null = null,
  ): void {
    this.count(`${model}/${version}`, atMs, latencyMs, failed);
    for (const [key, value] of Object.entries(slices ?? {}))
      this.count(sliceListKey(model, version, key, value), atMs, latencyMs, failed);
  }

  private count(key: string, atMs: number, latencyMs: number, failed: boolean): void {
    const list = this.buckets.get(key) ?? [];
    if (!this.buckets.has(key)) this.buckets.set(key, list);
    let bucket = list[list.length - 1];
    if (!bucket || bucket.atMs !== atMs) {
      bucket = { atMs, requests: 0, errors: 0, bins: new Map(), maxMs: 0 };
      list.push(bucket);
      trim(list, MAX_BUCKETS);
    }
    bucket.requests++;
    if (failed) bucket.errors++;
    const bin = latencyBucket(latencyMs);
    bucket.bins.set(bin, (bucket.bins.get(bin) ?? 0) + 1);
    bucket.maxMs = Math.max(bucket.maxMs, latencyMs);
  }

  observePair(atMs: number, model: string, champion: string, candidate: string, pair: ScorePair): void {
    this.pairs.push({ atMs, model, champion, candidate, pair });
    trim(this.pairs, MAX_PAIRS);
  }

  observePrediction(entry: Labelled): void {
    this.labelledRows.push(entry);
    trim(this.labelledRows, MAX_LABELLED);
  }

  /**
   * Counts of a window from the per-second buckets. The driver draws entities from a population
   * far larger than a window's requests, so each request is its own assignment unit.
   */
  counts(q: WindowQuery): Promise<WindowCounts> {
    const counts = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
    let requests = 0;
    let errors = 0;
    let maxMs: number | null = null;
    const list = q.slice
      ? this.buckets.get(sliceListKey(q.model, q.version, q.slice.key, q.slice.value))
      : this.buckets.get(`${q.model}/${q.version}`);
    for (const b of list ?? []) {
      if (b.atMs < q.fromMs || b.atMs > q.toMs) continue;
      requests += b.requests;
      errors += b.errors;
      for (const [bin, n] of b.bins) counts[bin]! += n;
      maxMs = Math.max(maxMs ?? 0, b.maxMs);
    }
    return Promise.resolve({
      requests,
      errors,
      units: requests,
      latency: { boundsMs: LATENCY_BOUNDS_MS, counts, maxMs },
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

  /** Predictions of the version in the window whose labels arrived by `toMs`, oldest first. */
  labelled(q: WindowQuery): Promise<LabelledPrediction[]> {
    const rows: LabelledPrediction[] = [];
    for (const r of this.labelledRows) {
      if (rows.length >= MAX_LABELLED_ROWS) break;
      if (r.model !== q.model || r.version !== q.version) continue;
      if (r.atMs < q.fromMs || r.atMs > q.toMs || r.labelAtMs > q.toMs) continue;
      if (q.slice && r.slices?.[q.slice.key] !== q.slice.value) continue;
      rows.push({ score: r.score, label: r.label, atMs: r.atMs, labelAtMs: r.labelAtMs });
    }
    return Promise.resolve(rows);
  }

  sliceValues(q: SliceValuesQuery): Promise<SliceValue[]> {
    const requests = new Map<string, number>();
    for (const [listKey, list] of this.buckets) {
      const [versionKey, key, value] = listKey.split('\u0000');
      if (key !== q.key || value === undefined || !versionKey!.startsWith(`${q.model}/`)) continue;
      let n = 0;
      for (const b of list) if (b.atMs >= q.fromMs && b.atMs <= q.toMs) n += b.requests;
      if (n > 0) requests.set(value, (requests.get(value) ?? 0) + n);
    }
    return Promise.resolve(
      [...requests]
        .map(([value, n]) => ({ value, requests: n }))
        .sort((a, b) => b.requests - a.requests || (a.value < b.value ? -1 : 1))
        .slice(0, q.limit),
    );
  }
}

export interface DriverOptions {
  /** Requests per second per model. */
  ratePerSec: number;
  /** Delay before a request's true label is known, ms. Default 0. */
  labelDelayMs?: number;
  /** Distinct entity keys the traffic is drawn from. Default 1000000. */
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
    const entity = `e${Math.floor(this.rand() * (this.options.entities ?? 1_000_000))}`;
    // The gateway's own sticky assignment, so the simulation routes exactly as the real plane does.
    const served = pickVersion(route.weights, `${model}:${entity}`);
    if (!served) return;
    const slices = slicesOf(route.sliceKeys, countryOf(entity));
    const primary = this.answer(model, served, entity, now, slices);
    if (primary.score !== null) {
      this.metrics.observePrediction({
        atMs: now,
        labelAtMs: now + (this.options.labelDelayMs ?? 0),
        model,
        version: served,
        score: primary.score,
        label: trueLabel(entity),
        slices,
      });
    }
    const shadow = route.shadow;
    if (shadow && shadow.version !== served && this.rand() < shadow.sampleRate) {
      const mirrored = this.answer(model, shadow.version, entity, now, slices);
      if (primary.score !== null && mirrored.score !== null) {
        this.metrics.observePair(now, model, served, shadow.version, {
          champion: primary.score,
          candidate: mirrored.score,
        });
      }
    }
  }

  private answer(
    model: string,
    version: string,
    entity: string,
    now: number,
    slices: Record<string, string> | null,
  ): { score: number | null } {
    if (!this.plane.isDeployed(model, version)) {
      this.metrics.observe(model, version, now, 0, true, slices);
      return { score: null };
    }
    const b = this.plane.versionRecord(model, version).behaviour;
    const local = b.byCountry?.[countryOf(entity)];
    const latency = (local?.latencyMs ?? b.latencyMs) + this.rand() * b.latencyJitterMs;
    const failed = this.rand() < (local?.errorRate ?? b.errorRate);
    this.metrics.observe(model, version, now, latency, failed, slices);
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
