/**
 * The provider catalog: implementations registered by type name, resolved per promotion from the
 * plan's `type` fields. An unknown type is an error naming the field, never a silent fallback.
 */
import { InvalidInputError } from '../common/errors';
import type {
  MetricsSource,
  Notifier,
  PolicyStore,
  ProviderRefs,
  ProviderSet,
  Registry,
  Serving,
  TrafficRouter,
  Validator,
} from './types';

export interface ServingPlane {
  serving: Serving;
  traffic: TrafficRouter;
  validator: Validator;
  policy: PolicyStore;
}

export interface ProviderCatalog {
  registry: Record<string, Registry>;
  serving: Record<string, ServingPlane>;
  metrics: Record<string, MetricsSource>;
  notify: Record<string, Notifier>;
}

function pick<T>(table: Record<string, T>, type: string, field: string): T {
  const found = table[type];
  if (!found) {
    throw new InvalidInputError(
      `${field}: provider type "${type}" is not available in this worker (known: ${Object.keys(table).join(', ') || 'none'})`,
    );
  }
  return found;
}

export function resolveProviders(catalog: ProviderCatalog, refs: ProviderRefs): ProviderSet {
  const plane = pick(catalog.serving, refs.serving, 'serving.type');
  return {
    registry: pick(catalog.registry, refs.registry, 'registry.type'),
    serving: plane.serving,
    traffic: plane.traffic,
    validator: plane.validator,
    policy: plane.policy,
    metrics: pick(catalog.metrics, refs.metrics, 'metrics.type'),
    notifier: pick(catalog.notify, refs.notify, 'notify.type'),
  };
}
