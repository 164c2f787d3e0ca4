/**
 * createActivities(catalog): the activity object the worker registers. Workflows import only its
 * type (`Activities`), so no I/O code reaches the workflow bundle.
 */
import type { ProviderCatalog } from '../providers/catalog';
import { ActivityContext } from './context';
import { allWithHeartbeats } from './heartbeat';
import { measureActivities } from './measure';
import { policyActivities } from './policy';
import { registryActivities } from './registry';
import { servingActivities } from './serving';
import { trafficActivities } from './traffic';

export function createActivities(catalog: ProviderCatalog) {
  const ctx = new ActivityContext(catalog);
  // Heartbeats let Temporal notice a worker that died mid-activity (see ./heartbeat.ts).
  return allWithHeartbeats({
    ...registryActivities(ctx),
    ...servingActivities(ctx),
    ...trafficActivities(ctx),
    ...measureActivities(ctx),
    ...policyActivities(ctx),
  });
}

export type Activities = ReturnType<typeof createActivities>;
export type { Target } from './context';
export type { PairedMeasurement } from './measure';
