/**
 * Heartbeats for every activity while it runs. Without them an activity says nothing until it
 * ends, so a worker that dies in the middle of one (SIGKILL, OOM, a lost machine) is noticed only
 * at the activity's start-to-close timeout: two minutes for the promotion's steps (sized for a
 * model server's start), during which the promotion stands still and its candidate's traffic is
 * not checked. With heartbeats, and a heartbeat timeout in the workflow's activity options, the
 * attempt is retried on a live worker within that timeout instead. An activity scheduled without
 * a heartbeat timeout does not heartbeat.
 */
import { Context } from '@temporalio/activity';

type AsyncFn = (...args: never[]) => Promise<unknown>;

/** How often, relative to the heartbeat timeout, a running activity heartbeats (the SDK throttles too). */
export const HEARTBEAT_FRACTION = 0.25;

/** `fn`, heartbeating while it runs when its activity was scheduled with a heartbeat timeout. */
export function withHeartbeats<F extends AsyncFn>(fn: F): F {
  const wrapped = async (...args: Parameters<F>): Promise<Awaited<ReturnType<F>>> => {
    const context = Context.current();
    const timeoutMs = context.info.heartbeatTimeoutMs;
    if (!timeoutMs) return (await fn(...args)) as Awaited<ReturnType<F>>;
    const timer = setInterval(
      () => context.heartbeat(),
      Math.max(100, Math.floor(timeoutMs * HEARTBEAT_FRACTION)),
    );
    try {
      return (await fn(...args)) as Awaited<ReturnType<F>>;
    } finally {
      clearInterval(timer);
    }
  };
  return wrapped as unknown as F;
}

/** Every activity of an activity object wrapped by `withHeartbeats`. */
export function allWithHeartbeats<T extends Record<string, AsyncFn>>(activities: T): T {
  return Object.fromEntries(Object.entries(activities).map(([name, fn]) => [name, withHeartbeats(fn)])) as T;
}
