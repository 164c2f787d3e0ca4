/**
 * The faults, each injected into a running promotion at a moment drawn from the seeded schedule:
 * worker SIGKILL (restarted after a short delay), Temporal dev server restart mid-bake (SIGKILL,
 * restarted on the same SQLite file and port after a few seconds: the dev server itself restarts in
 * a fraction of a second, a real one does not), MLflow outage, gateway SIGKILL (restarted on the
 * same state folder and port after the outage) and `temporal workflow terminate` mid-canary.
 * A fault whose moment comes after the promotion has ended is not injected (the caller carries it
 * over to the next promotion); one that has started always runs to its end.
 */
import { describe, terminate, type Described } from './control';
import type { Lock } from './lock';
import type { Service, TrialStack } from './stack';

export const FAULT_KINDS = [
  'worker_sigkill',
  'temporal_restart',
  'mlflow_outage',
  'gateway_kill',
  'terminate',
] as const;
export type FaultKind = (typeof FAULT_KINDS)[number];

/** A fault as scheduled (all random draws made up front, so a seed names the schedule). */
export interface PlannedFault {
  kind: FaultKind;
  /** Wait before injecting, ms: after the promotion started, or for the mid-bake kinds after the bake began. */
  delayMs: number;
  /** How long the service stays down before its restart, ms. 0 for terminate. */
  downMs: number;
}

export interface FaultRecord {
  kind: FaultKind;
  promotion: number;
  /** Seconds after the promotion started. */
  atSec: number;
  /** The promotion's phase and candidate traffic when it was injected. */
  phase: string | null;
  traffic: number | null;
  /** How long the service was unavailable, ms (kill to ready again). */
  unavailableMs: number | null;
  note?: string;
}

export interface FaultContext {
  stack: TrialStack;
  model: string;
  promotion: number;
  startedAtMs: number;
  /** Aborted when the promotion has ended. */
  ended: AbortSignal;
  say: (line: string) => void;
  /** Serialises worker kills (one is down at a time). */
  workerLock: Lock;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Sleeps `ms`; false (at once) when the promotion ends first. */
function sleepUnlessEnded(ms: number, ended: AbortSignal): Promise<boolean> {
  if (ended.aborted) return Promise.resolve(false);
  return new Promise((resolve) => {
    const timer = setTimeout(() => {
      ended.removeEventListener('abort', onAbort);
      resolve(true);
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      resolve(false);
    };
    ended.addEventListener('abort', onAbort, { once: true });
  });
}

/** Waits until the promotion bakes a canary step with candidate traffic; false if it ends first. */
async function untilMidBake(ctx: FaultContext): Promise<boolean> {
  while (!ctx.ended.aborted) {
    const d = await describe(ctx.stack, ctx.model);
    if (d?.status === 'RUNNING' && d.phase === 'canary' && (d.traffic ?? 0) > 0) return true;
    await sleepUnlessEnded(500, ctx.ended);
  }
  return false;
}

/** How long a restart is retried (a worker cannot start while Temporal is down). */
const RESTART_WITHIN_MS = 120_000;

/** Injects one planned fault; null when the promotion ended before its moment. */
export async function inject(f: PlannedFault, ctx: FaultContext): Promise<FaultRecord | null> {
  const { stack } = ctx;
  const midBake = f.kind === 'temporal_restart' || f.kind === 'terminate';
  if (midBake && !(await untilMidBake(ctx))) return null;
  if (!(await sleepUnlessEnded(f.delayMs, ctx.ended))) return null;
  const fire = async (act: (d: Described) => Promise<Partial<FaultRecord> | null>) => {
    const d = await describe(stack, ctx.model);
    if (ctx.ended.aborted || d?.status !== 'RUNNING') return null;
    const atSec = Math.round((Date.now() - ctx.startedAtMs) / 100) / 10;
    const base = { kind: f.kind, promotion: ctx.promotion, atSec, phase: d.phase, traffic: d.traffic };
    ctx.say(`  fault: ${f.kind} at ${atSec}s (${d.phase}, ${d.traffic ?? 0}% on the candidate)`);
    const extra = await act(d);
    return extra === null ? null : { unavailableMs: null, ...base, ...extra };
  };
  const outage = (service: Service, how: 'kill' | 'stop') =>
    fire(async () => {
      const t0 = Date.now();
      await stack.down(service, how);
      await sleep(f.downMs);
      await stack.startWithin(service, RESTART_WITHIN_MS);
      return { unavailableMs: Date.now() - t0 };
    });
  switch (f.kind) {
    case 'worker_sigkill':
      return ctx.workerLock.run(() => outage('worker', 'kill'));
    case 'temporal_restart':
      return outage('temporal', 'kill');
    case 'mlflow_outage':
      return outage('mlflow', 'stop');
    case 'gateway_kill':
      return outage('gateway', 'kill');
    case 'terminate':
      return fire(async () => {
        const ran = await terminate(stack, ctx.model, 'fault trial: terminated mid-canary');
        if (ran.code !== 0) {
          ctx.say(`  terminate refused (${ran.stderr.trim().split('\n')[0]}); carried over`);
          return null;
        }
        return { note: 'terminated with temporal workflow terminate' };
      });
  }
}
