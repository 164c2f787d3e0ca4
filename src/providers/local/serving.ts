/**
 * The local serving plane behind the Serving, TrafficRouter and PolicyStore interfaces: model
 * servers from the supervisor, registered with the gateway, which routes traffic and applies policy.
 */
import type { PolicyThresholds } from '../../plan/schema';
import type { ModelServerSupervisor } from '../../serving/supervisor';
import type { GatewayRoute, GatewayState } from '../../serving/gateway/server';
import { NotFoundError } from '../../common/errors';
import type {
  Deployment,
  Lease,
  LeaseRequest,
  PolicyStore,
  Registry,
  Route,
  Serving,
  TrafficRouter,
} from '../types';
import type { Datasets } from './datasets';
import { invocationBody } from './datasets';
import type { GatewayClient } from './gateway-client';

export class LocalServing implements Serving, TrafficRouter, PolicyStore {
  constructor(
    private readonly supervisor: ModelServerSupervisor,
    private readonly gateway: GatewayClient,
    private readonly registry: Registry,
    private readonly datasets: Datasets,
  ) {}

  async deploy(model: string, version: string): Promise<Deployment> {
    await this.registry.getVersion(model, version);
    const record = await this.supervisor.deploy(model, version);
    const endpoint = this.supervisor.endpoint(record);
    await this.gateway.admin('PUT', `backends/${enc(model)}/${enc(version)}`, { url: endpoint });
    return { model, version, endpoint, healthy: await this.supervisor.healthy(record) };
  }

  /** Up to three holdout rows through the version's own server: one valid score is a pass. */
  async smokeTest(model: string, version: string): Promise<{ ok: boolean; detail: string }> {
    const record = this.supervisor.get(model, version);
    if (!record) return { ok: false, detail: `${model}/${version} is not deployed` };
    const { inputs } = await this.registry.getVersion(model, version);
    const holdout = this.datasets.holdout(model);
    const features = inputs.map((i) => i.name);
    const absent = features.filter((f) => !holdout.columns.includes(f));
    if (absent.length > 0) {
      // The holdout cannot feed this version (the feature-schema gate will say why): health only.
      const up = await this.supervisor.healthy(record);
      return {
        ok: up,
        detail: `${up ? 'healthy' : 'not healthy'}; no scoring probe (the holdout lacks ${absent.join(', ')})`,
      };
    }
    const rows = holdout.rows.slice(0, 3);
    const answers: string[] = [];
    for (const row of rows) {
      try {
        const response = await fetch(`${this.supervisor.endpoint(record)}/invocations`, {
          method: 'POST',
          headers: { 'content-type': 'application/json' },
          body: invocationBody([row], features),
          signal: AbortSignal.timeout(10_000),
        });
        const score = response.ok
          ? ((await response.json()) as { predictions?: unknown[] }).predictions?.[0]
          : undefined;
        answers.push(
          typeof score === 'number' && score >= 0 && score <= 1 ? 'ok' : `HTTP ${response.status}`,
        );
      } catch (err) {
        answers.push((err as Error).message);
      }
    }
    const ok = answers.filter((a) => a === 'ok').length;
    return {
      ok: ok > 0,
      detail: `${ok} of ${answers.length} probe requests scored${ok < answers.length ? ` (${answers.filter((a) => a !== 'ok').join(', ')})` : ''}`,
    };
  }

  async decommission(model: string, version: string): Promise<void> {
    try {
      await this.gateway.admin('DELETE', `backends/${enc(model)}/${enc(version)}`);
    } catch (err) {
      if (!(err instanceof NotFoundError)) throw err;
    }
    await this.supervisor.decommission(model, version);
  }

  list(model: string): Promise<Deployment[]> {
    return Promise.resolve(
      this.supervisor
        .list(model)
        .map((r) => ({ model, version: r.version, endpoint: this.supervisor.endpoint(r), healthy: true })),
    );
  }

  // ---- TrafficRouter ----

  async getRoute(model: string): Promise<Route | null> {
    try {
      const route = await this.gateway.admin<GatewayRoute>('GET', `routes/${enc(model)}`);
      return { model, ...route };
    } catch (err) {
      if (err instanceof NotFoundError) return null;
      throw err;
    }
  }

  async setWeights(
    model: string,
    weights: Record<string, number>,
    stickyKey: string,
    lease?: string,
    sliceKeys?: string[],
  ): Promise<Route> {
    const current = await this.getRoute(model);
    const clean = Object.fromEntries(Object.entries(weights).filter(([, w]) => w > 0));
    const route = await this.gateway.admin<GatewayRoute>('PUT', `routes/${enc(model)}`, {
      weights: clean,
      shadow: current?.shadow ?? null,
      stickyKey,
      ...(sliceKeys ? { sliceKeys } : {}),
      ...(lease ? { lease } : {}),
    });
    return { model, ...route };
  }

  async setShadow(model: string, shadow: Route['shadow'], lease?: string): Promise<Route> {
    const current = await this.getRoute(model);
    if (!current) throw new NotFoundError(`${model} has no route to mirror from`);
    const route = await this.gateway.admin<GatewayRoute>('PUT', `routes/${enc(model)}`, {
      weights: current.weights,
      shadow,
      stickyKey: current.stickyKey,
      ...(lease ? { lease } : {}),
    });
    return { model, ...route };
  }

  // ---- Lease (the gateway expires it by itself; docs/fail-safe.md) ----

  acquireLease(model: string, request: LeaseRequest): Promise<Lease> {
    return this.gateway.admin<Lease>('PUT', `leases/${enc(model)}`, request);
  }

  releaseLease(model: string, holder: string): Promise<Lease | null> {
    return this.gateway
      .admin<Lease>('DELETE', `leases/${enc(model)}?holder=${enc(holder)}`)
      .catch((err: unknown) => {
        if (err instanceof NotFoundError) return null;
        throw err;
      });
  }

  getLease(model: string): Promise<Lease | null> {
    return this.gateway.admin<Lease>('GET', `leases/${enc(model)}`).catch((err: unknown) => {
      if (err instanceof NotFoundError) return null;
      throw err;
    });
  }

  // ---- PolicyStore ----

  async get(model: string, version: string): Promise<PolicyThresholds | null> {
    const state = await this.gateway.admin<GatewayState>('GET', 'state');
    return state.policies[model]?.[version] ?? null;
  }

  async set(model: string, version: string, thresholds: PolicyThresholds | null): Promise<void> {
    if (thresholds === null) await this.gateway.admin('DELETE', `policies/${enc(model)}/${enc(version)}`);
    else await this.gateway.admin('PUT', `policies/${enc(model)}/${enc(version)}`, thresholds);
  }
}

const enc = encodeURIComponent;
