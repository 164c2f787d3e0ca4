/**
 * Provider interfaces: the small seams between activities and the systems they act on.
 * Implementations are chosen by the plan's `type` fields (see ./catalog.ts).
 */
import type { LabelledPrediction } from '../analysis/labels';
import type { Measurement, WindowCounts } from '../analysis/types';
import type { ScorePair } from '../analysis/shadow';
import type { Gate, PolicyThresholds } from '../plan/schema';
import type { Lease, LeaseRequest } from '../serving/lease';
import type { SliceFilter, SliceValue } from '../serving/gateway/prediction-log/types';

export type { Lease, LeaseRequest, SliceFilter, SliceValue };

export interface FeatureSpec {
  name: string;
  type: string;
}

export interface ModelVersion {
  model: string;
  version: string;
  /** Input signature: the features the version expects. */
  inputs: FeatureSpec[];
  tags: Record<string, string>;
}

/** Model registry: versions, aliases and tags (MLflow in the real plane). */
export interface Registry {
  /** Throws NotFoundError when the version does not exist. */
  getVersion(model: string, version: string): Promise<ModelVersion>;
  getAlias(model: string, alias: string): Promise<string | null>;
  /** Points `alias` at `version`, or deletes it when `version` is null. Idempotent. */
  setAlias(model: string, alias: string, version: string | null): Promise<void>;
  setTags(model: string, version: string, tags: Record<string, string>): Promise<void>;
}

export interface Deployment {
  model: string;
  version: string;
  endpoint: string;
  healthy: boolean;
}

/** Serving: one deployment per version. deploy and decommission are idempotent. */
export interface Serving {
  deploy(model: string, version: string): Promise<Deployment>;
  smokeTest(model: string, version: string): Promise<{ ok: boolean; detail: string }>;
  decommission(model: string, version: string): Promise<void>;
  list(model: string): Promise<Deployment[]>;
}

export interface Route {
  model: string;
  /** Percent of live traffic per version; sums to 100. */
  weights: Record<string, number>;
  shadow: { version: string; sampleRate: number } | null;
  stickyKey: string;
  /** Request keys whose values are recorded with every prediction (per-slice checks). */
  sliceKeys: string[];
}

/**
 * Traffic: weighted routing and shadow mirroring under the promotion's lease (see
 * docs/fail-safe.md). Setters return the route as applied. A split route or a shadow needs the
 * active lease of the holder named in `lease`; a route sending all traffic to one version ends it.
 */
export interface TrafficRouter {
  getRoute(model: string): Promise<Route | null>;
  setWeights(
    model: string,
    weights: Record<string, number>,
    stickyKey: string,
    lease?: string,
    /** Replaces the route's slice keys; omitted, they stay as they are. */
    sliceKeys?: string[],
  ): Promise<Route>;
  setShadow(model: string, shadow: Route['shadow'], lease?: string): Promise<Route>;
  /** Acquires or renews; LeaseEndedError once the holder's lease has ended, ConflictError for another holder's. */
  acquireLease(model: string, request: LeaseRequest): Promise<Lease>;
  /** Releases the holder's lease if it is active. Idempotent. */
  releaseLease(model: string, holder: string): Promise<Lease | null>;
  getLease(model: string): Promise<Lease | null>;
}

export interface WindowQuery {
  model: string;
  version: string;
  fromMs: number;
  toMs: number;
  /** Only the requests of this slice. */
  slice?: SliceFilter;
}

/** Which values of a slice key to list: those with the most requests in the window, at most `limit`. */
export interface SliceValuesQuery {
  model: string;
  key: string;
  fromMs: number;
  toMs: number;
  limit: number;
}

/** Labelled predictions a source answers at most per version and window. */
export const MAX_LABELLED_ROWS = 50_000;

/**
 * Live per-version counts and rows. Each method throws when it cannot answer; the measuring
 * activity turns that into a measurement of phase Error (never Pass).
 */
export interface MetricsSource {
  /** Requests, errors, assignment units and the latency histogram (LATENCY_EDGES_MS) of a window. */
  counts(query: WindowQuery): Promise<WindowCounts>;
  /** Request pairs answered by both the champion (served) and the candidate (shadow). */
  shadowPairs(query: {
    model: string;
    champion: string;
    candidate: string;
    fromMs: number;
    toMs: number;
  }): Promise<ScorePair[]>;
  /** Predictions of the window whose labels arrived by `toMs`, oldest first, at most MAX_LABELLED_ROWS. */
  labelled(query: WindowQuery): Promise<LabelledPrediction[]>;
  /** A slice key's values with the most primary requests in the window (both versions), most first. */
  sliceValues(query: SliceValuesQuery): Promise<SliceValue[]>;
}

/** Offline validation: measures one gate's metric for one version. */
export interface Validator {
  measureGate(model: string, version: string, gate: Gate): Promise<Measurement>;
}

/** Decision policy per model version (thresholds applied to scores). */
export interface PolicyStore {
  get(model: string, version: string): Promise<PolicyThresholds | null>;
  set(model: string, version: string, thresholds: PolicyThresholds | null): Promise<void>;
}

export interface PromotionEvent {
  /** Idempotency key: the same key is announced once. */
  key: string;
  promotionId: string;
  model: string;
  candidate: string;
  kind: string;
  message: string;
}

export interface Notifier {
  notify(event: PromotionEvent): Promise<void>;
}

/** The providers one promotion uses, resolved from its plan's types. */
export interface ProviderSet {
  registry: Registry;
  serving: Serving;
  traffic: TrafficRouter;
  metrics: MetricsSource;
  validator: Validator;
  policy: PolicyStore;
  notifier: Notifier;
}

/** The provider type names a plan selects; carried in activity inputs. */
export interface ProviderRefs {
  registry: string;
  serving: string;
  metrics: string;
  notify: string;
}
