/**
 * Counts for time-skipping tests, where workflow time jumps ahead of the machine clock and no
 * real requests can fill a window. Each window is modelled from the route's weights when the
 * window was first asked about (the workflow first measures a split while it is live) and each
 * version's current behaviour: requests = rate x share x window length, errors and latencies drawn
 * from seeded generators, labelled scores drawn per version. It yields counts and rows only;
 * verdicts still come from the assessments.
 */
import type { LabelledPrediction } from '../../src/analysis/labels';
import type { ScorePair } from '../../src/analysis/shadow';
import type { WindowCounts } from '../../src/analysis/types';
import type { InProcessPlane } from '../../src/providers/inprocess/plane';
import { gaussian, seededRandom } from '../../src/providers/inprocess/random';
import { COUNTRIES, COUNTRY_KEYS } from '../../src/providers/inprocess/traffic';
import type { MetricsSource, SliceValue, SliceValuesQuery, WindowQuery } from '../../src/providers/types';
import { LATENCY_BOUNDS_MS, latencyBucket } from '../../src/serving/gateway/prediction-log/types';

export class ModelledMetrics implements MetricsSource {
  /** The share of each version at the start of each window (model/version/fromMs -> share). */
  private readonly shares = new Map<string, number>();

  constructor(
    private readonly plane: InProcessPlane,
    private readonly ratePerSec: number,
  ) {}

  private requests(q: WindowQuery): number {
    const key = `${q.model}/${q.version}/${q.fromMs}`;
    let share = this.shares.get(key);
    if (share === undefined) {
      share = (this.plane.routeNow(q.model)?.weights[q.version] ?? 0) / 100;
      this.shares.set(key, share);
    }
    const all = ((q.toMs - q.fromMs) / 1000) * this.ratePerSec * share;
    return Math.floor(q.slice ? all * countryShare(q.slice.key, q.slice.value) : all);
  }

  /** The behaviour of a version, for the requests of the query's slice. */
  private behaviour(q: WindowQuery) {
    const b = this.plane.versionRecord(q.model, q.version).behaviour;
    const local = q.slice ? b.byCountry?.[q.slice.value] : undefined;
    return {
      ...b,
      errorRate: local?.errorRate ?? b.errorRate,
      latencyMs: local?.latencyMs ?? b.latencyMs,
    };
  }

  /** The countries by traffic share (the synthetic traffic's slice attribute). */
  sliceValues(q: SliceValuesQuery): Promise<SliceValue[]> {
    if (!COUNTRY_KEYS.includes(q.key)) return Promise.resolve([]);
    const all = ((q.toMs - q.fromMs) / 1000) * this.ratePerSec;
    return Promise.resolve(
      COUNTRIES.map(([value, share]) => ({ value, requests: Math.floor(all * share) }))
        .filter((v) => v.requests > 0)
        .slice(0, q.limit),
    );
  }

  counts(q: WindowQuery): Promise<WindowCounts> {
    const n = this.requests(q);
    const counts = new Array<number>(LATENCY_BOUNDS_MS.length + 1).fill(0);
    const latency = { boundsMs: LATENCY_BOUNDS_MS, counts, maxMs: null as number | null };
    if (n === 0) return Promise.resolve({ requests: 0, errors: 0, units: 0, latency });
    const b = this.behaviour(q);
    const rand = seededRandom(
      `${q.model}/${q.version}/${q.fromMs}/${q.toMs}${q.slice ? `/${q.slice.value}` : ''}`,
    );
    // Normal approximation of Binomial(n, errorRate).
    const errors = Math.min(
      n,
      Math.max(
        0,
        Math.round(n * b.errorRate + gaussian(rand) * Math.sqrt(n * b.errorRate * (1 - b.errorRate))),
      ),
    );
    // At most 2000 drawn latencies, scaled up to n requests (the remainder on the largest bucket).
    const drawn = Math.min(n, 2000);
    const sample = new Array<number>(counts.length).fill(0);
    let maxMs = 0;
    for (let i = 0; i < drawn; i++) {
      const ms = b.latencyMs + rand() * b.latencyJitterMs;
      sample[latencyBucket(ms)]! += 1;
      maxMs = Math.max(maxMs, ms);
    }
    let placed = 0;
    let largest = 0;
    sample.forEach((c, i) => {
      counts[i] = Math.floor((c * n) / drawn);
      placed += counts[i];
      if (c > sample[largest]!) largest = i;
    });
    counts[largest]! += n - placed;
    return Promise.resolve({ requests: n, errors, units: n, latency: { ...latency, maxMs } });
  }

  shadowPairs(): Promise<ScorePair[]> {
    return Promise.resolve([]);
  }

  labelled(q: WindowQuery): Promise<LabelledPrediction[]> {
    const n = Math.min(this.requests(q), 5000);
    if (n === 0) return Promise.resolve([]);
    const b = this.behaviour(q);
    const rand = seededRandom(
      `labels/${q.model}/${q.version}/${q.toMs}${q.slice ? `/${q.slice.value}` : ''}`,
    );
    const rows: LabelledPrediction[] = [];
    for (let i = 0; i < n; i++) {
      const latent = gaussian(rand);
      const label = rand() < 1 / (1 + Math.exp(-(2 * latent - 1))) ? 1 : 0;
      const score = 1 / (1 + Math.exp(-(b.signal * latent + b.scoreShift + 0.5 * gaussian(rand))));
      const atMs = q.fromMs + Math.floor(((q.toMs - q.fromMs) * i) / n);
      rows.push({ score, label, atMs, labelAtMs: atMs });
    }
    return Promise.resolve(rows);
  }
}

/** The share of the traffic in a country slice (0 for keys the synthetic traffic does not carry). */
function countryShare(key: string, value: string): number {
  if (!COUNTRY_KEYS.includes(key)) return 0;
  return COUNTRIES.find(([c]) => c === value)?.[1] ?? 0;
}
