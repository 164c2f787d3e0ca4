/**
 * The composition root: builds the providers a worker offers, keyed by the plan's type names.
 * Issue-level note: `inprocess` is the only plane so far; the real serving plane adds its types here.
 */
import type { Logger } from '../common/logger';
import type { ProviderCatalog } from '../providers/catalog';
import { LogNotifier } from '../providers/notify/log';
import { InProcessPlane } from '../providers/inprocess/plane';
import { InProcessMetrics, TrafficDriver, type DriverOptions } from '../providers/inprocess/traffic';

export interface InProcessStack {
  plane: InProcessPlane;
  metrics: InProcessMetrics;
  notifier: LogNotifier;
  driver: TrafficDriver | null;
  catalog: ProviderCatalog;
}

/** The in-process plane, persisted to `stateDir` (null: memory only), with optional synthetic traffic. */
export function inProcessStack(opts: {
  stateDir: string | null;
  logger: Logger;
  traffic?: DriverOptions;
}): InProcessStack {
  const plane = new InProcessPlane(opts.stateDir);
  const metrics = new InProcessMetrics();
  const notifier = new LogNotifier(opts.logger);
  const driver =
    opts.traffic && opts.traffic.ratePerSec > 0
      ? new TrafficDriver(plane, metrics, opts.traffic).start()
      : null;
  return {
    plane,
    metrics,
    notifier,
    driver,
    catalog: {
      registry: { inprocess: plane },
      serving: { inprocess: { serving: plane, traffic: plane, validator: plane, policy: plane } },
      metrics: { inprocess: metrics },
      notify: { log: notifier },
    },
  };
}
