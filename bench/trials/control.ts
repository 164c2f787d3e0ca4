/**
 * How the harness drives and reads promotions: the real CLI (`node dist/client/main.js`) and the
 * Temporal CLI as child processes, and Temporal's describe for phase and traffic (search
 * attributes, answered without a worker).
 */
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { CANDIDATE, PHASE, TRAFFIC, promotionId } from '../../src/workflows/search';
import { ROOT, type TrialStack } from './stack';

export interface Ran {
  /** Exit code; -1 when it was killed at its timeout. */
  code: number;
  stdout: string;
  stderr: string;
}

export function runFile(
  command: string,
  args: string[],
  env: NodeJS.ProcessEnv,
  timeoutMs: number,
): Promise<Ran> {
  return new Promise((resolve) => {
    execFile(
      command,
      args,
      { env, timeout: timeoutMs, maxBuffer: 16 << 20, encoding: 'utf8' },
      (err, stdout, stderr) => {
        const code = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
        resolve({ code, stdout, stderr });
      },
    );
  });
}

/** `promote <args>` through the built CLI, with the stack's Temporal address and task queue. */
export function promote(stack: TrialStack, args: string[], timeoutMs = 120_000): Promise<Ran> {
  return runFile(process.execPath, [join(ROOT, 'dist/client/main.js'), ...args], stack.env(), timeoutMs);
}

/** `temporal workflow terminate` through the Temporal CLI. */
export function terminate(stack: TrialStack, model: string, reason: string): Promise<Ran> {
  return runFile(
    stack.o.temporalCli,
    [
      'workflow',
      'terminate',
      '--workflow-id',
      promotionId(model),
      '--reason',
      reason,
      '--address',
      stack.temporalAddress,
      '--namespace',
      'default',
    ],
    stack.env(),
    60_000,
  );
}

export interface Described {
  runId: string;
  /** RUNNING, COMPLETED, TERMINATED, FAILED... */
  status: string;
  phase: string | null;
  traffic: number | null;
  candidate: string | null;
}

/** The latest run of the model's promotion; null while Temporal cannot answer. */
export async function describe(stack: TrialStack, model: string): Promise<Described | null> {
  try {
    const d = await stack.client.workflow.getHandle(promotionId(model)).describe();
    const sa = d.typedSearchAttributes;
    return {
      runId: d.runId,
      status: d.status.name,
      phase: sa.get(PHASE) ?? null,
      traffic: sa.get(TRAFFIC) ?? null,
      candidate: sa.get(CANDIDATE) ?? null,
    };
  } catch {
    return null;
  }
}

/** A promise that rejects after `ms` (for calls that may hang while a service is down). */
export function within<T>(ms: number, what: string, p: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what}: no answer within ${Math.round(ms / 1000)}s`)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
