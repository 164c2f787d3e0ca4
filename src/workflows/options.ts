/** Activity options of the promotion's forward steps and measurements. */
import { ActivityCancellationType, proxyActivities } from '@temporalio/workflow';
import type { Activities } from '../activities';

/**
 * A worker that dies mid-activity is noticed after this long without a heartbeat (activities
 * heartbeat while they run, src/activities/heartbeat.ts), and the attempt is retried on a live
 * worker, instead of waiting out the start-to-close timeout.
 */
export const ACTIVITY_HEARTBEAT_TIMEOUT = '10 seconds';

/**
 * Forward steps ride out outages of the registry or the gateway: retried with capped backoff for
 * up to 15 minutes before the step fails (typed errors, such as a missing version, fail at once).
 * A cancelled step is waited for, so a compensation never races the step it undoes.
 */
export const forward = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: ACTIVITY_HEARTBEAT_TIMEOUT,
  scheduleToCloseTimeout: '15 minutes',
  cancellationType: ActivityCancellationType.WAIT_CANCELLATION_COMPLETED,
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

/**
 * Measurements are read-only and quick; a failing measurement becomes a measurement with phase
 * Error inside the activity, so a short timeout only bounds a lost worker.
 */
export const measuring = proxyActivities<Pick<Activities, 'measureLive' | 'measureLabels'>>({
  startToCloseTimeout: '30 seconds',
  heartbeatTimeout: ACTIVITY_HEARTBEAT_TIMEOUT,
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '10s', maximumAttempts: 5 },
});
