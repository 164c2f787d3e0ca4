/** Creating the promotion worker: the workflow bundle plus the activities over a provider catalog. */
import { NativeConnection, Worker, type WorkerOptions } from '@temporalio/worker';
import { createActivities } from '../activities';
import type { ProviderCatalog } from '../providers/catalog';

export interface PromotionWorkerOptions {
  connection: NativeConnection;
  namespace: string;
  taskQueue: string;
  catalog: ProviderCatalog;
  /** A prebuilt bundle (tests build one for all files); otherwise the workflows are bundled at start. */
  workflowBundle?: WorkerOptions['workflowBundle'];
  /** Graceful shutdown: how long running activities get to finish after SIGTERM. Default 30s. */
  shutdownGraceTime?: WorkerOptions['shutdownGraceTime'];
}

export function workflowsPath(): string {
  return require.resolve('../workflows');
}

export async function createPromotionWorker(opts: PromotionWorkerOptions): Promise<Worker> {
  return Worker.create({
    connection: opts.connection,
    namespace: opts.namespace,
    taskQueue: opts.taskQueue,
    activities: createActivities(opts.catalog),
    ...(opts.workflowBundle ? { workflowBundle: opts.workflowBundle } : { workflowsPath: workflowsPath() }),
    shutdownGraceTime: opts.shutdownGraceTime ?? '30s',
  });
}
