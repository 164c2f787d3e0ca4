/**
 * The in-process plane: registry, serving, traffic, policy and offline validation held in the
 * worker's memory and persisted to a state folder, recording every operation done to it so tests
 * can assert order and final state. It gives no verdicts: it answers with state and measurements,
 * and the pure assessments decide. The real serving plane (MLflow, model servers, gateway)
 * implements the same interfaces.
 */
import { join } from 'node:path';
import type { Measurement } from '../../analysis/types';
import { GATE_METRICS, type GateMetric } from '../../analysis/metrics';
import { quantile } from '../../analysis/stats';
import { NotFoundError, InvalidInputError } from '../../common/errors';
import type { Gate, PolicyThresholds } from '../../plan/schema';
import {
  acquireLease,
  checkRoute,
  expireLease,
  fallbackWeights,
  releaseLease,
  type Lease,
  type LeaseRequest,
} from '../../serving/lease';
import type {
  Deployment,
  FeatureSpec,
  ModelVersion,
  PolicyStore,
  Registry,
  Route,
  Serving,
  TrafficRouter,
  Validator,
} from '../types';
import { JsonFile } from './store';
import { seededRandom } from './random';

/** How a simulated version behaves when the in-process traffic driver sends it requests. */
export interface Behaviour {
  /** Probability that a request fails (0..1). */
  errorRate: number;
  /** Typical latency, ms. */
  latencyMs: number;
  /** Uniform extra latency 0..jitter, ms. */
  latencyJitterMs: number;
  /** How strongly scores follow the true label (0 = random, 2 = good). */
  signal: number;
  /** Added to the score logit (moves the score distribution). */
  scoreShift: number;
  /**
   * Different behaviour for the requests of one country (the synthetic traffic's slice attribute,
   * see traffic.ts): e.g. `{DE: {errorRate: 0.2}}` fails a fifth of German requests only.
   */
  byCountry?: Record<string, { errorRate?: number; latencyMs?: number }>;
}

export interface VersionRecord extends ModelVersion {
  /** Offline evaluation recorded at training time (e.g. auc, log_loss) on `holdoutRows` rows. */
  offline: Partial<Record<GateMetric, number>>;
  holdoutRows: number;
  behaviour: Behaviour;
}

/** Provider calls a test can make fail (see `setOutage`). */
export type OutageCall =
  'setAlias' | 'deploy' | 'decommission' | 'setWeights' | 'setShadow' | 'setPolicy' | 'lease';

export interface Operation {
  seq: number;
  at: string;
  op: 'deploy' | 'decommission' | 'setWeights' | 'setShadow' | 'setAlias' | 'setTags' | 'setPolicy';
  model: string;
  version?: string;
  detail: Record<string, unknown>;
}

interface ModelRecord {
  versions: Record<string, VersionRecord>;
  aliases: Record<string, string>;
  /** Features the live traffic carries (what the feature_schema gate checks against). */
  servedFeatures: FeatureSpec[];
}

export interface PlaneState {
  models: Record<string, ModelRecord>;
  deployments: Record<string, Record<string, Deployment>>;
  routes: Record<string, Route>;
  policies: Record<string, Record<string, PolicyThresholds>>;
  /** Traffic leases per model (docs/fail-safe.md). */
  leases: Record<string, Lease>;
  seq: number;
}

const emptyState = (): PlaneState => ({
  models: {},
  deployments: {},
  routes: {},
  policies: {},
  leases: {},
  seq: 0,
});

export const DEFAULT_BEHAVIOUR: Behaviour = {
  errorRate: 0.001,
  latencyMs: 8,
  latencyJitterMs: 4,
  signal: 1.5,
  scoreShift: 0,
};

export class InProcessPlane implements Registry, Serving, TrafficRouter, PolicyStore, Validator {
  private state: PlaneState;
  private readonly stateFile: JsonFile<PlaneState>;
  private readonly opsFile: JsonFile<never>;
  /** Every operation in order (also appended to operations.jsonl when persisted). */
  readonly operations: Operation[] = [];
  /** Added latency per provider call, ms (slow deployments and evaluations, for demos and tests). */
  private readonly delays: Partial<Record<'deploy' | 'measureGate', number>> = {};
  private readonly outages = new Map<OutageCall, string>();

  /** `stateDir` null keeps everything in memory; otherwise state survives a worker restart. */
  constructor(readonly stateDir: string | null) {
    this.stateFile = new JsonFile(stateDir ? join(stateDir, 'plane.json') : null, emptyState);
    this.opsFile = new JsonFile(
      stateDir ? join(stateDir, 'operations.jsonl') : null,
      () => undefined as never,
    );
    this.state = this.stateFile.read();
    this.state.leases ??= {};
  }

  // ---- seeding (tests, demo) ----

  /** Registers a version (as training would). Replaces an existing record of the same version. */
  registerVersion(
    record: Omit<VersionRecord, 'tags' | 'behaviour'> & {
      tags?: Record<string, string>;
      behaviour?: Partial<Behaviour>;
    },
  ): void {
    const model = this.modelRecord(record.model, true);
    model.versions[record.version] = {
      tags: {},
      ...record,
      behaviour: { ...DEFAULT_BEHAVIOUR, ...record.behaviour },
    };
    if (model.servedFeatures.length === 0) model.servedFeatures = record.inputs;
    this.save();
  }

  setServedFeatures(modelName: string, features: FeatureSpec[]): void {
    this.modelRecord(modelName, true).servedFeatures = features;
    this.save();
  }

  /** Changes how a version behaves under traffic (fault injection for demos and tests). */
  setBehaviour(modelName: string, version: string, behaviour: Partial<Behaviour>): void {
    const record = this.versionRecord(modelName, version);
    record.behaviour = { ...record.behaviour, ...behaviour };
    this.save();
  }

  /** Makes `deploy` or `measureGate` take `ms` longer (0 removes the delay). */
  setDelay(call: 'deploy' | 'measureGate', ms: number): void {
    this.delays[call] = ms;
  }

  /**
   * Makes calls fail as an outage would (a plain, retryable error) until cleared with null: for
   * tests of compensations that keep failing and of forward steps riding out an outage.
   */
  setOutage(call: OutageCall, message: string | null): void {
    if (message === null) this.outages.delete(call);
    else this.outages.set(call, message);
  }

  private outage(call: OutageCall): void {
    const message = this.outages.get(call);
    if (message !== undefined) throw new Error(`${call}: ${message}`);
  }

  private async delay(call: 'deploy' | 'measureGate'): Promise<void> {
    const ms = this.delays[call] ?? 0;
    if (ms > 0) await new Promise((resolve) => setTimeout(resolve, ms));
  }

  snapshot(): PlaneState {
    return structuredClone(this.state);
  }

  versionRecord(modelName: string, version: string): VersionRecord {
    const record = this.modelRecord(modelName).versions[version];
    if (!record) throw new NotFoundError(`model ${modelName} has no version ${version}`);
    return record;
  }

  models(): string[] {
    return Object.keys(this.state.models);
  }

  // ---- Registry ----

  getVersion(model: string, version: string): Promise<ModelVersion> {
    const { inputs, tags } = this.versionRecord(model, version);
    return Promise.resolve({ model, version, inputs, tags: { ...tags } });
  }

  getAlias(model: string, alias: string): Promise<string | null> {
    return Promise.resolve(this.modelRecord(model).aliases[alias] ?? null);
  }

  setAlias(model: string, alias: string, version: string | null): Promise<void> {
    this.outage('setAlias');
    const record = this.modelRecord(model, true);
    if (version !== null) this.versionRecord(model, version);
    const before = record.aliases[alias] ?? null;
    if (before === version) return Promise.resolve();
    if (version === null) delete record.aliases[alias];
    else record.aliases[alias] = version;
    this.record('setAlias', model, version ?? undefined, { alias, version, before });
    return Promise.resolve();
  }

  setTags(model: string, version: string, tags: Record<string, string>): Promise<void> {
    const record = this.versionRecord(model, version);
    record.tags = { ...record.tags, ...tags };
    this.record('setTags', model, version, { tags });
    return Promise.resolve();
  }

  // ---- Serving ----

  async deploy(model: string, version: string): Promise<Deployment> {
    this.outage('deploy');
    this.versionRecord(model, version);
    const existing = this.state.deployments[model]?.[version];
    if (existing) return { ...existing };
    await this.delay('deploy');
    const deployment: Deployment = {
      model,
      version,
      endpoint: `inprocess://${model}/${version}`,
      healthy: true,
    };
    (this.state.deployments[model] ??= {})[version] = deployment;
    this.record('deploy', model, version, {});
    return { ...deployment };
  }

  smokeTest(model: string, version: string): Promise<{ ok: boolean; detail: string }> {
    const deployment = this.state.deployments[model]?.[version];
    if (!deployment) return Promise.resolve({ ok: false, detail: `${model}/${version} is not deployed` });
    const behaviour = this.versionRecord(model, version).behaviour;
    // A few probe requests against the version's behaviour; all failing means it cannot serve.
    const rand = seededRandom(`${model}/${version}/smoke`);
    const failures = Array.from({ length: 5 }, () => rand() < behaviour.errorRate).filter(Boolean).length;
    return Promise.resolve(
      failures === 5
        ? { ok: false, detail: '5 of 5 probe requests failed' }
        : { ok: true, detail: `${5 - failures} of 5 probe requests answered` },
    );
  }

  decommission(model: string, version: string): Promise<void> {
    this.outage('decommission');
    if (!this.state.deployments[model]?.[version]) return Promise.resolve();
    delete this.state.deployments[model][version];
    this.record('decommission', model, version, {});
    return Promise.resolve();
  }

  list(model: string): Promise<Deployment[]> {
    return Promise.resolve(Object.values(this.state.deployments[model] ?? {}).map((d) => ({ ...d })));
  }

  isDeployed(model: string, version: string): boolean {
    return Boolean(this.state.deployments[model]?.[version]);
  }

  // ---- Traffic ----

  getRoute(model: string): Promise<Route | null> {
    this.expireLease(model);
    const route = this.state.routes[model];
    return Promise.resolve(route ? structuredClone(route) : null);
  }

  routeNow(model: string): Route | undefined {
    this.expireLease(model);
    return this.state.routes[model];
  }

  setWeights(
    model: string,
    weights: Record<string, number>,
    stickyKey: string,
    lease?: string,
    sliceKeys?: string[],
  ): Promise<Route> {
    this.outage('setWeights');
    const clean = Object.fromEntries(Object.entries(weights).filter(([, w]) => w > 0));
    const total = Object.values(clean).reduce((a, b) => a + b, 0);
    if (total !== 100) throw new InvalidInputError(`weights for ${model} sum to ${total}, not 100`);
    for (const version of Object.keys(clean)) {
      if (!this.isDeployed(model, version))
        throw new InvalidInputError(`${model}/${version} has no healthy deployment`);
    }
    this.expireLease(model);
    const shadow = this.state.routes[model]?.shadow ?? null;
    this.applyLease(
      model,
      checkRoute(this.state.leases[model], { weights: clean, shadow }, lease, Date.now()),
    );
    const route = (this.state.routes[model] ??= {
      model,
      weights: {},
      shadow: null,
      stickyKey,
      sliceKeys: [],
    });
    // Routes saved by an older build have no slice keys.
    route.sliceKeys = sliceKeys ?? route.sliceKeys ?? [];
    if (JSON.stringify(route.weights) !== JSON.stringify(clean) || route.stickyKey !== stickyKey) {
      route.weights = clean;
      route.stickyKey = stickyKey;
      this.record('setWeights', model, undefined, { weights: clean });
    }
    return this.getRoute(model) as Promise<Route>;
  }

  setShadow(model: string, shadow: Route['shadow'], lease?: string): Promise<Route> {
    this.outage('setShadow');
    this.expireLease(model);
    const route = this.state.routes[model];
    if (!route) throw new InvalidInputError(`${model} has no route to mirror from`);
    if (shadow && !this.isDeployed(model, shadow.version)) {
      throw new InvalidInputError(`${model}/${shadow.version} has no healthy deployment`);
    }
    this.applyLease(
      model,
      checkRoute(this.state.leases[model], { weights: route.weights, shadow }, lease, Date.now()),
    );
    if (JSON.stringify(route.shadow) !== JSON.stringify(shadow)) {
      route.shadow = shadow;
      this.record('setShadow', model, shadow?.version, { shadow });
    }
    return this.getRoute(model) as Promise<Route>;
  }

  // ---- Lease ----

  acquireLease(model: string, request: LeaseRequest): Promise<Lease> {
    this.outage('lease');
    this.expireLease(model);
    const lease = acquireLease(this.state.leases[model], request, Date.now());
    this.applyLease(model, lease);
    return Promise.resolve(structuredClone(lease));
  }

  releaseLease(model: string, holder: string): Promise<Lease | null> {
    this.outage('lease');
    this.expireLease(model);
    const lease = releaseLease(this.state.leases[model], holder, Date.now());
    this.applyLease(model, lease);
    return Promise.resolve(lease ? structuredClone(lease) : null);
  }

  getLease(model: string): Promise<Lease | null> {
    this.expireLease(model);
    const lease = this.state.leases[model];
    return Promise.resolve(lease ? structuredClone(lease) : null);
  }

  private applyLease(model: string, lease: Lease | undefined): void {
    if (lease === this.state.leases[model]) return;
    if (lease) this.state.leases[model] = lease;
    else delete this.state.leases[model];
    this.save();
  }

  /** An active lease past its expiry ends, and its champion gets all traffic (what the gateway does). */
  private expireLease(model: string): void {
    const lease = this.state.leases[model];
    if (!lease) return;
    const after = expireLease(lease, Date.now());
    if (after === lease) return;
    this.state.leases[model] = after;
    const route = this.state.routes[model];
    if (route) {
      route.weights = fallbackWeights(after);
      route.shadow = null;
      this.record('setWeights', model, undefined, { weights: route.weights, reason: after.reason });
    }
    this.save();
  }

  /** Seeds a route directly (the champion serving 100% before any promotion). */
  initRoute(model: string, version: string, stickyKey = 'header:x-entity-id'): void {
    this.deploySync(model, version);
    this.state.routes[model] = { model, weights: { [version]: 100 }, shadow: null, stickyKey, sliceKeys: [] };
    this.save();
  }

  private deploySync(model: string, version: string): void {
    (this.state.deployments[model] ??= {})[version] = {
      model,
      version,
      endpoint: `inprocess://${model}/${version}`,
      healthy: true,
    };
  }

  // ---- Policy ----

  get(model: string, version: string): Promise<PolicyThresholds | null> {
    return Promise.resolve(this.state.policies[model]?.[version] ?? null);
  }

  set(model: string, version: string, thresholds: PolicyThresholds | null): Promise<void> {
    this.outage('setPolicy');
    const before = this.state.policies[model]?.[version] ?? null;
    if (JSON.stringify(before) === JSON.stringify(thresholds)) return Promise.resolve();
    if (thresholds === null) delete this.state.policies[model]?.[version];
    else (this.state.policies[model] ??= {})[version] = thresholds;
    this.record('setPolicy', model, version, { thresholds, before });
    return Promise.resolve();
  }

  // ---- Validator ----

  /** Offline metrics come from the version's recorded holdout evaluation; latency from probe requests. */
  async measureGate(model: string, version: string, gate: Gate): Promise<Measurement> {
    await this.delay('measureGate');
    return this.gateMeasurement(model, version, gate);
  }

  private gateMeasurement(model: string, version: string, gate: Gate): Promise<Measurement> {
    const record = this.versionRecord(model, version);
    const metric = gate.metric ?? gate.check ?? 'unknown';
    if (gate.check === 'feature_schema') {
      const served = new Map(this.modelRecord(model).servedFeatures.map((f) => [f.name, f.type]));
      const problems = record.inputs.flatMap((f) =>
        !served.has(f.name)
          ? [`missing ${f.name}`]
          : served.get(f.name) !== f.type
            ? [`${f.name} is ${served.get(f.name)}, expected ${f.type}`]
            : [],
      );
      return Promise.resolve({
        metric,
        version,
        value: problems.length === 0 ? 1 : 0,
        samples: record.inputs.length,
        phase: 'Ok',
        detail: problems.length === 0 ? `${record.inputs.length} inputs served` : problems.join(', '),
      });
    }
    if (gate.metric === 'latency_p50_ms' || gate.metric === 'latency_p99_ms') {
      const rand = seededRandom(`${model}/${version}/latency`);
      const b = record.behaviour;
      const samples = Array.from({ length: 500 }, () => b.latencyMs + rand() * b.latencyJitterMs);
      return Promise.resolve({
        metric,
        version,
        value: quantile(samples, gate.metric === 'latency_p50_ms' ? 0.5 : 0.99),
        samples: 500,
        phase: 'Ok',
      });
    }
    const value = gate.metric ? record.offline[gate.metric] : undefined;
    if (value === undefined) {
      const known = Object.keys(record.offline).filter((k) => k in GATE_METRICS);
      return Promise.resolve({
        metric,
        version,
        value: null,
        samples: 0,
        phase: 'Ok',
        detail: `no ${metric} evaluation recorded (have: ${known.join(', ') || 'none'})`,
      });
    }
    return Promise.resolve({ metric, version, value, samples: record.holdoutRows, phase: 'Ok' });
  }

  // ---- internals ----

  private modelRecord(model: string, create = false): ModelRecord {
    let record = this.state.models[model];
    if (!record) {
      if (!create) throw new NotFoundError(`model ${model} is not registered`);
      record = this.state.models[model] = { versions: {}, aliases: {}, servedFeatures: [] };
    }
    return record;
  }

  private record(
    op: Operation['op'],
    model: string,
    version: string | undefined,
    detail: Record<string, unknown>,
  ): void {
    const entry: Operation = {
      seq: ++this.state.seq,
      at: new Date().toISOString(),
      op,
      model,
      version,
      detail,
    };
    this.operations.push(entry);
    this.save();
    this.opsFile.append(entry);
  }

  private save(): void {
    this.stateFile.write(this.state);
  }
}
