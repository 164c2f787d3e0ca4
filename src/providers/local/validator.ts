/**
 * Offline validation through the version's own (staging) model server: quality metrics on the
 * holdout, latency percentiles under a short load, and the input signature against the features
 * the gateway's live traffic carries. A gate that cannot be measured is an Error (or NoData), never
 * a value that could pass: no input signature fails the schema check, and failed or timed-out
 * requests count as slow in the latency percentiles.
 */
import { quantile } from '../../analysis/stats';
import type { Measurement } from '../../analysis/types';
import type { Gate } from '../../plan/schema';
import type { ModelServerSupervisor } from '../../serving/supervisor';
import type { FeatureSpec, Registry, Validator } from '../types';
import { invocationBody, type Datasets } from './datasets';
import type { GatewayClient } from './gateway-client';
import { labelMeasurement } from '../../analysis/labels';

export interface ValidatorOptions {
  /** Requests in the latency gate's load. Default 200. */
  loadRequests?: number;
  /** How many of them run at once. Default 4. */
  loadConcurrency?: number;
  /**
   * Per-request timeout of the load, ms. Default 2000; raised to twice the gate's `max` when that
   * is higher, so a request counted at the timeout always exceeds the gate.
   */
  loadTimeoutMs?: number;
  /** No new load request starts after this long, ms. Default 30000. */
  loadBudgetMs?: number;
  /** Per-batch timeout when scoring the holdout, ms. Default 30000. */
  scoreTimeoutMs?: number;
}

/** What the validator needs of the supervisor: the version's running server and its address. */
export type ServerLookup = Pick<ModelServerSupervisor, 'get' | 'endpoint'>;

const NUMERIC = new Set(['double', 'float', 'long', 'integer']);

/** Whether a served column can feed an input: numeric widens to numeric; otherwise types must match. */
function compatible(expected: string, served: string): boolean {
  return expected === served || (NUMERIC.has(expected) && NUMERIC.has(served));
}

/** The result of the latency load: one latency per request sent, failures counted at the timeout. */
export interface LoadResult {
  latencies: number[];
  failed: number;
  timedOut: number;
  /** The first failure, for the detail. */
  firstFailure: string | null;
  timeoutMs: number;
  /** Whether the load stopped early because its time budget ran out. */
  truncated: boolean;
}

function isFeatureList(value: unknown): value is FeatureSpec[] {
  return (
    Array.isArray(value) &&
    value.every(
      (f) =>
        typeof f === 'object' &&
        f !== null &&
        typeof (f as FeatureSpec).name === 'string' &&
        typeof (f as FeatureSpec).type === 'string',
    )
  );
}

export class LocalValidator implements Validator {
  private readonly o: Required<ValidatorOptions>;

  constructor(
    private readonly supervisor: ServerLookup,
    private readonly registry: Registry,
    private readonly gateway: GatewayClient,
    private readonly datasets: Datasets,
    options: ValidatorOptions = {},
  ) {
    this.o = {
      loadRequests: options.loadRequests ?? 200,
      loadConcurrency: options.loadConcurrency ?? 4,
      loadTimeoutMs: options.loadTimeoutMs ?? 2000,
      loadBudgetMs: options.loadBudgetMs ?? 30_000,
      scoreTimeoutMs: options.scoreTimeoutMs ?? 30_000,
    };
  }

  async measureGate(model: string, version: string, gate: Gate): Promise<Measurement> {
    const metric = gate.metric ?? gate.check ?? 'gate';
    const error = (message: string): Measurement => ({
      metric,
      version,
      value: null,
      samples: 0,
      phase: 'Error',
      error: message,
    });
    const { inputs } = await this.registry.getVersion(model, version);
    if (gate.check === 'feature_schema') return this.featureSchema(model, version, inputs);
    if (inputs.length === 0)
      return error(`${model}/${version} has no input signature in the registry: no request can be built`);
    const record = this.supervisor.get(model, version);
    if (!record) return error(`${model}/${version} has no running model server`);
    const endpoint = `${this.supervisor.endpoint(record)}/invocations`;
    const holdout = this.datasets.holdout(model);
    const features = inputs.map((i) => i.name);
    const missing = features.filter((f) => !holdout.columns.includes(f));
    if (missing.length > 0) return error(`the holdout has no ${missing.join(', ')}`);
    if (holdout.rows.length === 0) return error(`the holdout of ${model} has no rows`);
    if (gate.metric === 'latency_p50_ms' || gate.metric === 'latency_p99_ms') {
      const timeoutMs = Math.max(this.o.loadTimeoutMs, 2 * (gate.max ?? 0));
      const load = await this.load(endpoint, holdout.rows, features, timeoutMs);
      return latencyMeasurement(metric, version, gate.metric === 'latency_p50_ms' ? 0.5 : 0.99, load);
    }
    const scores: number[] = [];
    for (let i = 0; i < holdout.rows.length; i += 100) {
      const batch = holdout.rows.slice(i, i + 100);
      const score = async (): Promise<number[] | string> => {
        try {
          const response = await fetch(endpoint, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: invocationBody(batch, features),
            signal: AbortSignal.timeout(this.o.scoreTimeoutMs),
          });
          const text = await response.text();
          if (!response.ok) return `HTTP ${response.status} ${text.slice(0, 200)}`;
          const predictions = (JSON.parse(text) as { predictions?: unknown }).predictions;
          if (
            !Array.isArray(predictions) ||
            predictions.length !== batch.length ||
            !predictions.every((p) => typeof p === 'number' && Number.isFinite(p))
          )
            return `the answer is not ${batch.length} numeric predictions: ${text.slice(0, 200)}`;
          return predictions as number[];
        } catch (err) {
          return (err as Error).name === 'TimeoutError'
            ? `no answer within ${this.o.scoreTimeoutMs}ms`
            : (err as Error).message;
        }
      };
      // Quality is what is measured here, not availability (the guardrails watch that): a batch
      // that fails is tried up to three times before the measurement is an Error.
      let result = await score();
      for (let attempt = 1; attempt < 3 && typeof result === 'string'; attempt++) result = await score();
      if (typeof result === 'string') return error(`scoring the holdout failed: ${result}`);
      scores.push(...result);
    }
    const rows = scores.map((score, i) => ({ version, score, label: Number(holdout.rows[i]!.label) }));
    return labelMeasurement(rows, { version, metric });
  }

  private async featureSchema(model: string, version: string, inputs: FeatureSpec[]): Promise<Measurement> {
    const base = { metric: 'feature_schema', version, samples: inputs.length, phase: 'Ok' as const };
    // No signature means nothing says which inputs the version expects: compatibility is unknown,
    // and an unknown must not pass.
    if (inputs.length === 0)
      return {
        ...base,
        value: 0,
        detail: `${model}/${version} has no input signature in the registry (log the model with a signature)`,
      };
    const answer = await this.gateway.admin<unknown>('GET', `features/${encodeURIComponent(model)}`);
    if (!isFeatureList(answer))
      return {
        ...base,
        value: null,
        phase: 'Error',
        error: `the gateway's feature list for ${model} is not a list of {name, type}`,
      };
    const served = new Map(answer.map((f) => [f.name, f.type]));
    if (served.size === 0)
      return { ...base, value: null, detail: 'the gateway has seen no traffic for this model yet' };
    const problems = inputs.flatMap((f) => {
      const type = served.get(f.name);
      if (type === undefined) return [`missing ${f.name}`];
      return compatible(f.type, type) ? [] : [`${f.name} is ${type}, expected ${f.type}`];
    });
    return {
      ...base,
      value: problems.length === 0 ? 1 : 0,
      detail: problems.length === 0 ? `${inputs.length} inputs served` : problems.join(', '),
    };
  }

  /**
   * Single-row requests against the server, a few at a time, each with a timeout. A request that
   * fails (HTTP error, connection error) or times out counts at the timeout or its own time,
   * whichever is longer: a failing server must never look fast.
   */
  private async load(
    endpoint: string,
    rows: Record<string, string>[],
    features: string[],
    timeoutMs: number,
  ): Promise<LoadResult> {
    const result: LoadResult = {
      latencies: [],
      failed: 0,
      timedOut: 0,
      firstFailure: null,
      timeoutMs,
      truncated: false,
    };
    const stopAt = performance.now() + this.o.loadBudgetMs;
    let next = 0;
    const worker = async () => {
      while (next < this.o.loadRequests) {
        if (performance.now() > stopAt) {
          result.truncated = true;
          return;
        }
        const row = rows[next++ % rows.length]!;
        const started = performance.now();
        let failure: string | null = null;
        try {
          const response = await fetch(endpoint, {
            method: 'POST',
            headers: { 'content-type': 'application/json' },
            body: invocationBody([row], features),
            signal: AbortSignal.timeout(timeoutMs),
          });
          const body = await response.arrayBuffer();
          if (!response.ok)
            failure = `HTTP ${response.status} ${Buffer.from(body).subarray(0, 120).toString()}`;
        } catch (err) {
          if ((err as Error).name === 'TimeoutError') {
            result.timedOut++;
            failure = `no answer within ${timeoutMs}ms`;
          } else failure = (err as Error).message;
        }
        const elapsed = performance.now() - started;
        if (failure === null) result.latencies.push(elapsed);
        else {
          result.failed++;
          result.firstFailure ??= failure;
          result.latencies.push(Math.max(elapsed, timeoutMs));
        }
      }
    };
    await Promise.all(Array.from({ length: this.o.loadConcurrency }, worker));
    return result;
  }
}

/** A latency percentile over a load: Error when nothing answered, failures in the detail. */
export function latencyMeasurement(
  metric: string,
  version: string,
  q: number,
  load: LoadResult,
): Measurement {
  const sent = load.latencies.length;
  const base = { metric, version, samples: sent, events: load.failed };
  const failures =
    load.failed === 0
      ? 'no request failed'
      : `${load.failed} failed (${load.timedOut} timed out), counted at ${load.timeoutMs}ms or more; first: ${load.firstFailure ?? ''}`;
  const budget = load.truncated ? '; the load stopped early at its time budget' : '';
  if (sent === 0 || load.failed === sent)
    return {
      ...base,
      value: null,
      phase: 'Error',
      error: `the server answered none of ${sent} requests: ${failures}${budget}`,
    };
  return {
    ...base,
    value: quantile(load.latencies, q),
    phase: 'Ok',
    detail: `${sent} requests, ${failures}${budget}`,
  };
}
