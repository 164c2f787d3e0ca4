/**
 * Offline validation through the version's own (staging) model server: quality metrics on the
 * holdout, latency percentiles under a short load, and the input signature against the features
 * the gateway's live traffic carries.
 */
import { quantile } from '../../analysis/stats';
import type { Measurement } from '../../analysis/types';
import type { Gate } from '../../plan/schema';
import type { ModelServerSupervisor } from '../../serving/supervisor';
import type { FeatureSpec, Registry, Validator } from '../types';
import { invocationBody, type Datasets } from './datasets';
import type { GatewayClient } from './gateway-client';
import { labelMeasurement } from '../../analysis/labels';

/** Requests in the latency gate's load, and how many run at once. */
const LOAD_REQUESTS = 200;
const LOAD_CONCURRENCY = 4;

const NUMERIC = new Set(['double', 'float', 'long', 'integer']);

/** Whether a served column can feed an input: numeric widens to numeric; otherwise types must match. */
function compatible(expected: string, served: string): boolean {
  return expected === served || (NUMERIC.has(expected) && NUMERIC.has(served));
}

export class LocalValidator implements Validator {
  constructor(
    private readonly supervisor: ModelServerSupervisor,
    private readonly registry: Registry,
    private readonly gateway: GatewayClient,
    private readonly datasets: Datasets,
  ) {}

  async measureGate(model: string, version: string, gate: Gate): Promise<Measurement> {
    const metric = gate.metric ?? gate.check ?? 'gate';
    const { inputs } = await this.registry.getVersion(model, version);
    if (gate.check === 'feature_schema') return this.featureSchema(model, version, inputs);
    const record = this.supervisor.get(model, version);
    if (!record)
      return {
        metric,
        version,
        value: null,
        samples: 0,
        phase: 'Error',
        error: `${model}/${version} has no running model server`,
      };
    const endpoint = `${this.supervisor.endpoint(record)}/invocations`;
    const holdout = this.datasets.holdout(model);
    const features = inputs.map((i) => i.name);
    const missing = features.filter((f) => !holdout.columns.includes(f));
    if (missing.length > 0)
      return {
        metric,
        version,
        value: null,
        samples: 0,
        phase: 'Error',
        error: `the holdout has no ${missing.join(', ')}`,
      };
    if (gate.metric === 'latency_p50_ms' || gate.metric === 'latency_p99_ms') {
      const latencies = await this.load(endpoint, holdout.rows, features);
      return {
        metric,
        version,
        value: quantile(latencies, gate.metric === 'latency_p50_ms' ? 0.5 : 0.99),
        samples: latencies.length,
        phase: 'Ok',
      };
    }
    const scores: number[] = [];
    for (let i = 0; i < holdout.rows.length; i += 100) {
      const score = () =>
        fetch(endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: invocationBody(holdout.rows.slice(i, i + 100), features),
          signal: AbortSignal.timeout(30_000),
        });
      // Quality is what is measured here, not availability (the guardrails watch that): a batch
      // that fails is tried up to three times before the measurement is an Error.
      let response = await score();
      for (let attempt = 1; attempt < 3 && !response.ok; attempt++) response = await score();
      if (!response.ok)
        return {
          metric,
          version,
          value: null,
          samples: 0,
          phase: 'Error',
          error: `scoring the holdout failed: HTTP ${response.status} ${await response.text()}`,
        };
      scores.push(...((await response.json()) as { predictions: number[] }).predictions);
    }
    const rows = scores.map((score, i) => ({ version, score, label: Number(holdout.rows[i]!.label) }));
    return labelMeasurement(rows, { version, metric });
  }

  private async featureSchema(model: string, version: string, inputs: FeatureSpec[]): Promise<Measurement> {
    const served = new Map(
      (await this.gateway.admin<FeatureSpec[]>('GET', `features/${encodeURIComponent(model)}`)).map((f) => [
        f.name,
        f.type,
      ]),
    );
    const base = { metric: 'feature_schema', version, samples: inputs.length, phase: 'Ok' as const };
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

  /** Single-row requests against the server; latency of each, ms (failed requests count too). */
  private async load(
    endpoint: string,
    rows: Record<string, string>[],
    features: string[],
  ): Promise<number[]> {
    const latencies: number[] = [];
    let next = 0;
    const worker = async () => {
      while (next < LOAD_REQUESTS) {
        const row = rows[next++ % rows.length]!;
        const started = performance.now();
        await fetch(endpoint, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: invocationBody([row], features),
        })
          .then((r) => r.arrayBuffer())
          .catch(() => undefined);
        latencies.push(performance.now() - started);
      }
    };
    await Promise.all(Array.from({ length: LOAD_CONCURRENCY }, worker));
    return latencies;
  }
}
