/**
 * The long-running children of `promote dev up` and `promote demo` (the Temporal dev server,
 * MLflow, the gateway) and what makes a crash harmless:
 *
 * - each child runs in its own process group, wrapped by `setpriv --pdeathsig TERM` where util-linux
 *   has it, so the kernel sends it SIGTERM when promote dies, even by SIGKILL;
 * - each child has a pid file, `<data>/run/<name>.pid` (pid, process group, start time, command,
 *   and a marker in its environment that its own children inherit);
 * - the next start reads the pid files, checks that each process is still the one recorded (same
 *   start time and command line, or the marker for a group whose leader died) and stops its process
 *   group, saying what it stopped;
 * - `<data>/run/promote.pid` names the promote process using the folder, so a second start on a
 *   folder in use is refused instead of stopping the first one's children.
 */
import { spawn, type ChildProcess, type StdioOptions } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import { accessSync, constants, mkdirSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { delimiter, join, resolve } from 'node:path';
import { ConflictError } from '../common/errors';
import {
  alive,
  cmdline,
  environ,
  groupMembers,
  runs,
  startTicks,
  stopGroup,
  stopPids,
} from '../common/processes';

export interface LaunchSpec {
  /** File name of the pid file, e.g. `mlflow`. */
  name: string;
  /** What it is, for messages: `MLflow server`. */
  label: string;
  command: string;
  args: string[];
  env?: NodeJS.ProcessEnv;
  stdio: StdioOptions;
}

export interface Launched {
  process: ChildProcess;
  /** Stops the child (its whole process group where it has one) and forgets it. Idempotent. */
  stop(graceMs?: number): Promise<void>;
}

/** Starts a child process; the embedded stack passes a RunDir's, tests may use the plain one. */
export type Launcher = (spec: LaunchSpec) => Launched;

/** A plain child in promote's own process group, stopped with SIGTERM then SIGKILL. */
export const plainLauncher: Launcher = (spec) => {
  const child = spawn(spec.command, spec.args, { stdio: spec.stdio, env: spec.env ?? process.env });
  return { process: child, stop: (graceMs) => stopProcess(child, graceMs) };
};

export function stopProcess(child: ChildProcess, graceMs = 10_000): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve();
    });
    child.kill('SIGTERM');
  });
}

/** What a pid file records. */
export interface PidRecord {
  name: string;
  label: string;
  pid: number;
  /** The child's process group (its own pid: it is started as a group leader). */
  pgid: number;
  /** Start time in clock ticks since boot (/proc/<pid>/stat), null where unknown. */
  startTicks: number | null;
  startedAt: string;
  /** The argv the child runs (after the setpriv wrapper has exec'd). */
  command: string[];
  /** `PROMOTE_DEV_CHILD=<marker>` is in the environment of the child and its descendants. */
  marker: string;
}

const MARKER_VAR = 'PROMOTE_DEV_CHILD';

/** The setpriv executable (util-linux) if it is on PATH. */
export function findSetpriv(): string | null {
  for (const dir of (process.env.PATH ?? '').split(delimiter).filter(Boolean)) {
    const candidate = join(dir, 'setpriv');
    try {
      accessSync(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return null;
}

function parseRecord(text: string): PidRecord | null {
  try {
    const r = JSON.parse(text) as Partial<PidRecord>;
    if (
      typeof r.name !== 'string' ||
      typeof r.label !== 'string' ||
      !Number.isInteger(r.pid) ||
      !Number.isInteger(r.pgid) ||
      !Array.isArray(r.command) ||
      !r.command.every((c) => typeof c === 'string') ||
      typeof r.marker !== 'string' ||
      r.marker.length < 16
    )
      return null;
    return r as PidRecord;
  } catch {
    return null;
  }
}

/** The promote process using a data folder. */
type Owner = Pick<PidRecord, 'pid' | 'startTicks' | 'command'>;

function readOwner(file: string): Owner | null {
  try {
    const o = JSON.parse(readFileSync(file, 'utf8')) as Partial<Owner>;
    if (!Number.isInteger(o.pid) || !Array.isArray(o.command)) return null;
    if (!o.command.every((c) => typeof c === 'string')) return null;
    return {
      pid: o.pid!,
      startTicks: typeof o.startTicks === 'number' ? o.startTicks : null,
      command: o.command,
    };
  } catch {
    return null;
  }
}

/** Whether the recorded process is still the one promote started (not a reused pid). */
function isRecorded(record: Owner): boolean {
  if (!alive(record.pid)) return false;
  const ticks = startTicks(record.pid);
  if (record.startTicks !== null && ticks !== null && ticks !== record.startTicks) return false;
  return runs(cmdline(record.pid), record.command);
}

/** Live processes of the record's group that carry its marker (a group whose leader died). */
function markedMembers(record: PidRecord): number[] {
  const tag = `${MARKER_VAR}=${record.marker}`;
  return groupMembers(record.pgid).filter((pid) => environ(pid)?.includes(tag) ?? false);
}

export class RunDir {
  readonly dir: string;
  private readonly setpriv: string | null;
  private readonly launched = new Set<Launched>();

  private constructor(
    dataDir: string,
    private readonly say: (line: string) => void,
  ) {
    this.dir = join(resolve(dataDir), 'run');
    this.setpriv = findSetpriv();
  }

  /**
   * Claims `<data>/run` for this process: refuses when another live promote uses it, stops what an
   * earlier run left behind (saying so), and records this process as the folder's owner.
   */
  static async claim(dataDir: string, say: (line: string) => void): Promise<RunDir> {
    const run = new RunDir(dataDir, say);
    mkdirSync(run.dir, { recursive: true, mode: 0o700 });
    const ownerFile = join(run.dir, 'promote.pid');
    const owner = readOwner(ownerFile);
    if (owner && owner.pid !== process.pid && isRecorded(owner)) {
      throw new ConflictError(
        `another promote (pid ${owner.pid}) is running on ${resolve(dataDir)}; stop it first, or use another --data folder`,
      );
    }
    await run.stopLeftovers();
    // The command line as /proc shows it (process.argv resolves `node` to a path and leaves out
    // node's own flags, so it would not match at the next check).
    const me: Owner = {
      pid: process.pid,
      startTicks: startTicks(process.pid),
      command: cmdline(process.pid) ?? process.argv,
    };
    writeFileSync(ownerFile, `${JSON.stringify(me)}\n`, { mode: 0o600 });
    if (!run.setpriv)
      say(
        'setpriv (util-linux) not found: children will not stop with promote if it crashes; the next start stops them',
      );
    return run;
  }

  /** Stops the processes recorded by pid files of an earlier run, and removes the files. */
  private async stopLeftovers(): Promise<void> {
    let files: string[];
    try {
      files = readdirSync(this.dir).filter((f) => f.endsWith('.pid') && f !== 'promote.pid');
    } catch {
      return;
    }
    for (const file of files) {
      const path = join(this.dir, file);
      let text = '';
      try {
        text = readFileSync(path, 'utf8');
      } catch {
        continue;
      }
      const record = parseRecord(text);
      if (record) {
        const leader = isRecorded(record);
        const others = markedMembers(record);
        if (leader || others.length > 0) {
          // The group is stopped as a whole only when its leader is verified; otherwise only the
          // marked processes are, one by one: never signal a group that a reused pid now leads.
          const how = leader ? await stopGroup(record.pgid, 10_000) : await stopPids(others, 10_000);
          const pids = leader ? `pid ${record.pid}` : `pids ${others.join(', ')} of group ${record.pgid}`;
          this.say(
            `stopped a leftover ${record.label} (${pids}) from an earlier run${how === 'killed' ? ' (it needed SIGKILL)' : ''}`,
          );
        }
      }
      rmSync(path, { force: true });
    }
  }

  /** Starts a child as described at the top of this file. */
  readonly launch: Launcher = (spec) => {
    const marker = randomUUID();
    const wrapped = this.setpriv
      ? { command: this.setpriv, args: ['--pdeathsig', 'TERM', '--', spec.command, ...spec.args] }
      : { command: spec.command, args: spec.args };
    const child = spawn(wrapped.command, wrapped.args, {
      stdio: spec.stdio,
      env: { ...(spec.env ?? process.env), [MARKER_VAR]: marker },
      // Its own process group: stopped as a whole, and not hit by the terminal's Ctrl-C (promote
      // stops it in order instead).
      detached: true,
    });
    const file = join(this.dir, `${spec.name}.pid`);
    if (child.pid !== undefined) {
      const record: PidRecord = {
        name: spec.name,
        label: spec.label,
        pid: child.pid,
        pgid: child.pid,
        startTicks: startTicks(child.pid),
        startedAt: new Date().toISOString(),
        command: [spec.command, ...spec.args],
        marker,
      };
      writeFileSync(file, `${JSON.stringify(record)}\n`, { mode: 0o600 });
    }
    let stopping: Promise<void> | null = null;
    const launched: Launched = {
      process: child,
      stop: (graceMs = 10_000) =>
        (stopping ??= (async () => {
          if (child.pid !== undefined) await stopGroup(child.pid, graceMs);
          rmSync(file, { force: true });
          this.launched.delete(launched);
        })()),
    };
    this.launched.add(launched);
    return launched;
  };

  /** Stops every child still running (last started first) and gives the folder up. */
  async release(): Promise<void> {
    for (const l of [...this.launched].reverse()) await l.stop();
    rmSync(join(this.dir, 'promote.pid'), { force: true });
  }
}
