/**
 * Process helpers for the processes promote starts and may have to find again: whether a pid is
 * alive, what it runs (Linux /proc), and stopping a whole process group with a bounded wait.
 * Where /proc is missing, the lookups return null and callers treat the process as unverifiable.
 */
import { readdirSync, readFileSync } from 'node:fs';

/** Whether /proc can be read here (Linux). */
export const hasProc = (() => {
  try {
    readdirSync('/proc/self');
    return true;
  } catch {
    return false;
  }
})();

/** Whether a process with this pid exists and is not a zombie (it may belong to another user). */
export function alive(pid: number): boolean {
  if (!Number.isInteger(pid) || pid <= 0) return false;
  if (hasProc) {
    const state = statFields(pid)?.[0];
    return state !== undefined && state !== 'Z' && state !== 'X';
  }
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether any live (non-zombie) process of the process group exists. */
export function groupAlive(pgid: number): boolean {
  if (!Number.isInteger(pgid) || pgid <= 1) return false;
  if (hasProc) return groupMembers(pgid).length > 0;
  try {
    process.kill(-pgid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

function readProc(pid: number, file: string): string | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  try {
    return readFileSync(`/proc/${pid}/${file}`, 'utf8');
  } catch {
    return null;
  }
}

/** The process's argv (from /proc/<pid>/cmdline), or null when it is gone or unreadable. */
export function cmdline(pid: number): string[] | null {
  const raw = readProc(pid, 'cmdline');
  if (raw === null || raw === '') return null;
  return raw.replace(/\0$/, '').split('\0');
}

/** The process's environment entries (`NAME=value`), or null when unreadable. */
export function environ(pid: number): string[] | null {
  const raw = readProc(pid, 'environ');
  return raw === null ? null : raw.split('\0').filter(Boolean);
}

/** Fields of /proc/<pid>/stat after the command name (which may contain spaces and parentheses). */
function statFields(pid: number): string[] | null {
  const raw = readProc(pid, 'stat');
  if (raw === null) return null;
  const end = raw.lastIndexOf(')');
  return end < 0 ? null : raw.slice(end + 2).split(' ');
}

/**
 * The process's start time in clock ticks since boot (field 22 of /proc/<pid>/stat): with the pid,
 * it identifies one process for the life of the machine, so a reused pid is told apart.
 */
export function startTicks(pid: number): number | null {
  const value = Number(statFields(pid)?.[19]);
  return Number.isFinite(value) ? value : null;
}

/** The process group of a process, or null. */
export function processGroup(pid: number): number | null {
  const value = Number(statFields(pid)?.[2]);
  return Number.isFinite(value) ? value : null;
}

/** Pids of the live (non-zombie) processes in a process group (scans /proc; empty without it). */
export function groupMembers(pgid: number): number[] {
  let entries: string[];
  try {
    entries = readdirSync('/proc');
  } catch {
    return [];
  }
  return entries
    .filter((e) => /^\d+$/.test(e))
    .map(Number)
    .filter((pid) => {
      const fields = statFields(pid);
      return fields !== null && Number(fields[2]) === pgid && fields[0] !== 'Z' && fields[0] !== 'X';
    });
}

/**
 * Whether a process's argv ends with `command` (the argv promote started). A script started
 * through its `#!` line shows its interpreter first (`python3 /venv/bin/mlflow server ...`), and a
 * command wrapped by `setpriv ... --` shows the wrapper until it has exec'd: both still end with it.
 */
export function runs(argv: readonly string[] | null, command: readonly string[]): boolean {
  if (argv === null || command.length === 0 || argv.length < command.length) return false;
  const offset = argv.length - command.length;
  return command.every((part, i) => argv[offset + i] === part);
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/**
 * Stops every process of a group: SIGTERM (and SIGCONT, so a stopped process can act on it), then
 * SIGKILL for whatever is left after `graceMs`. Resolves once the group is gone or, after the
 * SIGKILL, after a last bounded wait. Returns how it ended.
 */
export async function stopGroup(pgid: number, graceMs = 10_000): Promise<'gone' | 'terminated' | 'killed'> {
  if (!groupAlive(pgid)) return 'gone';
  const signal = (s: NodeJS.Signals) => {
    try {
      process.kill(-pgid, s);
    } catch {
      // gone meanwhile
    }
  };
  signal('SIGTERM');
  signal('SIGCONT');
  const deadline = Date.now() + graceMs;
  while (groupAlive(pgid) && Date.now() < deadline) await sleep(100);
  if (!groupAlive(pgid)) return 'terminated';
  signal('SIGKILL');
  for (let i = 0; i < 50 && groupAlive(pgid); i++) await sleep(100);
  return 'killed';
}

/** Stops single processes: SIGTERM (and SIGCONT), then SIGKILL after `graceMs` for any still alive. */
export async function stopPids(
  pids: readonly number[],
  graceMs = 10_000,
): Promise<'gone' | 'terminated' | 'killed'> {
  const living = () => pids.filter(alive);
  if (living().length === 0) return 'gone';
  const signal = (s: NodeJS.Signals) => {
    for (const pid of living()) {
      try {
        process.kill(pid, s);
      } catch {
        // gone meanwhile
      }
    }
  };
  signal('SIGTERM');
  signal('SIGCONT');
  const deadline = Date.now() + graceMs;
  while (living().length > 0 && Date.now() < deadline) await sleep(100);
  if (living().length === 0) return 'terminated';
  signal('SIGKILL');
  for (let i = 0; i < 50 && living().length > 0; i++) await sleep(100);
  return 'killed';
}
