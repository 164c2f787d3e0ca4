/**
 * The real local serving plane's providers: MLflow registry, model servers from the supervisor,
 * the gateway (traffic, policy, measurements) and offline validation through staging servers.
 * Registered under the plan types registry `mlflow`, serving `local`, metrics `local`.
 */
import type { Logger } from '../common/logger';
import type { ProviderCatalog } from '../providers/catalog';
import { Datasets } from '../providers/local/datasets';
import { GatewayClient } from '../providers/local/gateway-client';
import { GatewayMetrics } from '../providers/local/metrics';
import { LocalServing } from '../providers/local/serving';
import { LocalValidator } from '../providers/local/validator';
import { MlflowRegistry } from '../providers/mlflow/registry';
import { ModelServerSupervisor } from '../serving/supervisor';

export interface LocalPlaneOptions {
  mlflowUrl: string;
  gatewayUrl: string;
  gatewayToken: string;
  /** Supervisor state (servers.json, server logs). */
  stateDir: string;
  pythonEnv: string;
  /** Holdout datasets: <datasetsDir>/<model>/holdout.csv. */
  datasetsDir: string;
  logger: Logger;
}

export interface LocalPlane {
  supervisor: ModelServerSupervisor;
  serving: LocalServing;
  registry: MlflowRegistry;
  gateway: GatewayClient;
  datasets: Datasets;
}

export function localPlane(opts: LocalPlaneOptions): LocalPlane {
  const registry = new MlflowRegistry(opts.mlflowUrl);
  const supervisor = new ModelServerSupervisor({
    stateDir: opts.stateDir,
    trackingUri: opts.mlflowUrl,
    pythonEnv: opts.pythonEnv,
    logger: opts.logger,
  });
  const gateway = new GatewayClient(opts.gatewayUrl, opts.gatewayToken);
  const datasets = new Datasets(opts.datasetsDir);
  return {
    supervisor,
    registry,
    gateway,
    datasets,
    serving: new LocalServing(supervisor, gateway, registry, datasets),
  };
}

/** Adds the local plane's providers to a catalog. */
export function addLocalPlane(catalog: ProviderCatalog, plane: LocalPlane): ProviderCatalog {
  catalog.registry.mlflow = plane.registry;
  catalog.serving.local = {
    serving: plane.serving,
    traffic: plane.serving,
    policy: plane.serving,
    validator: new LocalValidator(plane.supervisor, plane.registry, plane.gateway, plane.datasets),
  };
  catalog.metrics.local = new GatewayMetrics(plane.gateway);
  return catalog;
}
