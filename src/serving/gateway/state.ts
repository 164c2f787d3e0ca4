/**
 * The gateway's persisted state: per model its route, model servers, faults, policies, observed
 * features and traffic lease. In memory everything keyed by a name is a Map (or a null-prototype
 * record), so no model, version or column name - `__proto__`, `constructor` - can reach an
 * object's prototype. On disk it is one JSON document written crash-safely (JsonFile).
 */
import { join } from 'node:path';
import { JsonFile } from '../../providers/inprocess/store';
import { leaseAfterRestart, type Lease } from '../lease';
import { NAME } from './http';

export interface GatewayRoute {
  /** Version -> whole percent; a null-prototype record. */
  weights: Record<string, number>;
  shadow: { version: string; sampleRate: number } | null;
  /** `header:<name>` or `field:<name>`. */
  stickyKey: string;
  /** Keys (same syntax) whose values are recorded with every prediction, for per-slice checks. */
  sliceKeys: string[];
}

export interface Fault {
  latencyMs: number;
  errorRate: number;
}

export interface Thresholds {
  review: number;
  block: number;
}

/** The state as JSON (GET /admin/state and the state file): records keyed by model, then version. */
export interface GatewayState {
  routes: Record<string, GatewayRoute>;
  /** Input columns the live traffic carries per model, with the JSON type of their values. */
  features: Record<string, Record<string, string>>;
  backends: Record<string, Record<string, string>>;
  faults: Record<string, Record<string, Fault>>;
  policies: Record<string, Record<string, Thresholds>>;
  leases: Record<string, Lease>;
}

export class ModelState {
  route: GatewayRoute | null = null;
  readonly backends = new Map<string, string>();
  readonly faults = new Map<string, Fault>();
  readonly policies = new Map<string, Thresholds>();
  readonly features = new Map<string, string>();
  lease: Lease | null = null;
}

export const DEFAULT_STICKY_KEY = 'header:x-entity-id';
/** Slice keys a route records at most. */
export const MAX_SLICE_KEYS = 4;

/** A null-prototype record from entries: safe to index with any key. */
export function nullRecord<T>(entries: Iterable<[string, T]>): Record<string, T> {
  const out = Object.create(null) as Record<string, T>;
  for (const [k, v] of entries) out[k] = v;
  return out;
}

const isObject = (v: unknown): v is Record<string, unknown> =>
  v !== null && typeof v === 'object' && !Array.isArray(v);

/** Own entries of a parsed JSON record whose keys are valid names (others are skipped). */
function named(v: unknown): [string, unknown][] {
  return isObject(v) ? Object.entries(v).filter(([k]) => NAME.test(k)) : [];
}

export class StateStore {
  private readonly models = new Map<string, ModelState>();
  private readonly file: JsonFile<unknown> | null;
  private saveTimer: NodeJS.Timeout | null = null;
  private changes = 0;
  /** Called after every save (the multi-process gateway sends the new state to its workers). */
  onSave: (() => void) | null = null;

  /**
   * Loads the state file; active leases get a fresh time to live from `nowMs` (the restart).
   * Without a folder the store is a replica: it persists nothing and takes its state from `replace`.
   */
  constructor(stateDir: string | null, nowMs: number) {
    this.file =
      stateDir === null ? null : new JsonFile<unknown>(join(stateDir, 'gateway-state.json'), () => ({}));
    if (this.file) this.load(this.file.read(), nowMs);
  }

  /** Counts saves: a change to the state since a given count means there is something to send. */
  get version(): number {
    return this.changes;
  }

  /** Replaces everything with `state` (a replica receiving its primary's state). Leases as given. */
  replace(state: unknown): void {
    this.models.clear();
    this.load(state, null);
  }

  get(model: string): ModelState | undefined {
    return this.models.get(model);
  }

  ensure(model: string): ModelState {
    let m = this.models.get(model);
    if (!m) this.models.set(model, (m = new ModelState()));
    return m;
  }

  entries(): IterableIterator<[string, ModelState]> {
    return this.models.entries();
  }

  /** Writes the state now (write, fsync, rename, fsync the directory). */
  save(): void {
    if (this.saveTimer) clearTimeout(this.saveTimer);
    this.saveTimer = null;
    try {
      this.file?.write(this.toJSON());
    } finally {
      // Workers get the change even when writing it failed: the state in memory is what routes.
      this.changes++;
      this.onSave?.();
    }
  }

  /** Writes the state within a second: for observations (features) that change in bursts. */
  saveSoon(onError: (err: unknown) => void): void {
    this.saveTimer ??= setTimeout(() => {
      try {
        this.save();
      } catch (err) {
        onError(err);
      }
    }, 1000);
    this.saveTimer.unref();
  }

  /** Writes any pending save (at close). */
  flush(): void {
    if (this.saveTimer) this.save();
  }

  toJSON(): GatewayState {
    const per = <T>(pick: (m: ModelState) => T | null | undefined) =>
      nullRecord(
        [...this.models].flatMap(([model, m]) => {
          const v = pick(m);
          return v === null || v === undefined ? [] : [[model, v] as [string, T]];
        }),
      );
    const nonEmpty = <T>(map: Map<string, T>) => (map.size === 0 ? null : nullRecord(map));
    return {
      routes: per((m) => m.route),
      features: per((m) => nonEmpty(m.features)),
      backends: per((m) => nonEmpty(m.backends)),
      faults: per((m) => nonEmpty(m.faults)),
      policies: per((m) => nonEmpty(m.policies)),
      leases: per((m) => m.lease),
    };
  }

  private load(raw: unknown, nowMs: number | null): void {
    const doc = isObject(raw) ? raw : {};
    const each = (section: string, apply: (m: ModelState, value: unknown) => void) => {
      for (const [model, value] of named(doc[section])) apply(this.ensure(model), value);
    };
    each('routes', (m, v) => (m.route = readRoute(v)));
    each('backends', (m, v) => {
      for (const [version, url] of named(v)) if (typeof url === 'string') m.backends.set(version, url);
    });
    each('faults', (m, v) => {
      for (const [version, f] of named(v))
        if (isObject(f))
          m.faults.set(version, { latencyMs: Number(f.latencyMs), errorRate: Number(f.errorRate) });
    });
    each('policies', (m, v) => {
      for (const [version, t] of named(v))
        if (isObject(t)) m.policies.set(version, { review: Number(t.review), block: Number(t.block) });
    });
    each('features', (m, v) => {
      if (isObject(v)) for (const [column, type] of Object.entries(v)) m.features.set(column, String(type));
    });
    each('leases', (m, v) => {
      if (isObject(v) && typeof v.holder === 'string')
        m.lease = nowMs === null ? (v as unknown as Lease) : leaseAfterRestart(v as unknown as Lease, nowMs);
    });
  }
}

function readRoute(v: unknown): GatewayRoute | null {
  if (!isObject(v)) return null;
  const weights = nullRecord(
    named(v.weights).flatMap(([version, w]) =>
      typeof w === 'number' ? [[version, w] as [string, number]] : [],
    ),
  );
  const shadow =
    isObject(v.shadow) && typeof v.shadow.version === 'string'
      ? { version: v.shadow.version, sampleRate: Number(v.shadow.sampleRate) }
      : null;
  const sliceKeys = Array.isArray(v.sliceKeys)
    ? v.sliceKeys.filter((k): k is string => typeof k === 'string').slice(0, MAX_SLICE_KEYS)
    : [];
  return {
    weights,
    shadow,
    stickyKey: typeof v.stickyKey === 'string' ? v.stickyKey : DEFAULT_STICKY_KEY,
    sliceKeys,
  };
}
