/**
 * The model server supervisor: one `mlflow models serve` process per deployed version, each on its
 * own free port. Servers run in their own process groups and outlive the worker; their records are
 * persisted, so a restarted worker adopts the running servers instead of starting duplicates.
 * A monitor restarts a server that died. deploy and decommission are idempotent.
 *
 * A model server runs candidate code: it starts with a minimal environment (see modelServerEnv),
 * so no promote, Temporal, database or cloud secret of the worker reaches it. A recorded pid is
 * only trusted, and its process group only signalled, while /proc shows it still serves the
 * recorded version: a pid reused by another process after a reboot is never adopted or killed.
 *
 * servers.json is the truth, read again before every decision: two workers on one state folder (a
 * restart that overlaps the old worker's shutdown) must not act on stale copies of it, or one
 * restarts a server the other has just decommissioned, or starts a second server for a version.
 */
import { spawn } from 'node:child_process';
import { mkdirSync, openSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import type { Logger } from '../common/logger';
import { freePort } from '../common/net';
import { alive, cmdline, hasProc, stopGroup } from '../common/processes';
import { JsonFile } from '../providers/inprocess/store';

export interface ServerRecord {
  model: string;
  version: string;
  port: number;
  pid: number;
  startedAt: string;
  restarts: number;
}

export interface SupervisorOptions {
  /** Where servers.json and the servers' logs live. */
  stateDir: string;
  /** MLflow tracking URI the servers load `models:/<model>/<version>` from. */
  trackingUri: string;
  /** The Python environment with MLflow (bin/mlflow, bin/uvicorn). */
  pythonEnv: string;
  logger: Logger;
  host?: string;
  /** How long a server gets to answer /ping after start, ms. Default 120000. */
  startTimeoutMs?: number;
  /** Health check interval of the monitor, ms. Default 2000; 0 disables the monitor. */
  monitorMs?: number;
}

const key = (model: string, version: string) => `${model}/${version}`;

/** Variables a model server inherits from the worker besides PATH: locale, home, temp, time zone. */
const PASSED_THROUGH = ['HOME', 'LANG', 'LANGUAGE', 'TMPDIR', 'TZ'];

/**
 * The whole environment of a model server: PATH with the Python environment's bin first (mlflow
 * runs `bash -c "exec uvicorn ..."`, so bash and uvicorn must be found), the tracking URI it loads
 * `models:/` from, and HOME, LANG, LANGUAGE, LC_*, TMPDIR, TZ when set. Nothing else: credentials
 * of the worker (tokens, API keys, database URLs and passwords) stay out of candidate code.
 */
export function modelServerEnv(
  parent: NodeJS.ProcessEnv,
  pythonEnv: string,
  trackingUri: string,
): Record<string, string> {
  const env: Record<string, string> = {
    PATH: [join(pythonEnv, 'bin'), parent.PATH || '/usr/local/bin:/usr/bin:/bin'].join(delimiter),
    MLFLOW_TRACKING_URI: trackingUri,
  };
  for (const [name, value] of Object.entries(parent))
    if (value !== undefined && (PASSED_THROUGH.includes(name) || name.startsWith('LC_'))) env[name] = value;
  return env;
}

/** What became of the servers recorded by an earlier worker, as `reconcile` found them. */
export interface Reconciled {
  /** Still running the recorded version: kept and used. */
  adopted: ServerRecord[];
  /** Gone (or their pid now belongs to another process): restarted by the monitor or the next deploy. */
  gone: ServerRecord[];
}

export class ModelServerSupervisor {
  private readonly file: JsonFile<Record<string, ServerRecord>>;
  private records: Record<string, ServerRecord>;
  private readonly pending = new Map<string, Promise<ServerRecord>>();
  /** Versions being decommissioned: a start still waiting for its port must not spawn. */
  private readonly decommissioned = new Set<string>();
  private monitor: NodeJS.Timeout | null = null;
  readonly host: string;

  constructor(private readonly opts: SupervisorOptions) {
    mkdirSync(opts.stateDir, { recursive: true });
    this.file = new JsonFile(join(opts.stateDir, 'servers.json'), () => ({}));
    this.records = this.file.read();
    this.host = opts.host ?? '127.0.0.1';
    const every = opts.monitorMs ?? 2000;
    if (every > 0) {
      this.monitor = setInterval(() => void this.heal(), every);
      this.monitor.unref();
    }
  }

  endpoint(record: ServerRecord): string {
    return `http://${this.host}:${record.port}`;
  }

  /** The records as servers.json has them now (another worker may have changed them). */
  private reload(): Record<string, ServerRecord> {
    this.records = this.file.read();
    return this.records;
  }

  /** The running server of a version, if any. */
  get(model: string, version: string): ServerRecord | undefined {
    return this.reload()[key(model, version)];
  }

  list(model?: string): ServerRecord[] {
    return Object.values(this.reload()).filter((r) => model === undefined || r.model === model);
  }

  /** Starts the version's server unless one is already up (then returns it). Waits for health. */
  deploy(model: string, version: string): Promise<ServerRecord> {
    const k = key(model, version);
    const running = this.pending.get(k);
    if (running) return running;
    const work = this.ensure(model, version).finally(() => this.pending.delete(k));
    this.pending.set(k, work);
    return work;
  }

  /**
   * Whether the record's process is alive and still serves the recorded version on the recorded
   * port (checked in /proc where there is one).
   */
  running(record: ServerRecord): boolean {
    if (!alive(record.pid)) return false;
    if (!hasProc) return true;
    const argv = cmdline(record.pid);
    return (
      argv !== null &&
      argv.includes(`models:/${record.model}/${record.version}`) &&
      argv.includes(String(record.port))
    );
  }

  /** Sorts the recorded servers into adopted and gone (the stack says which at start). */
  reconcile(): Reconciled {
    const all = Object.values(this.reload());
    return {
      adopted: all.filter((r) => this.running(r)),
      gone: all.filter((r) => !this.running(r)),
    };
  }

  private async ensure(model: string, version: string): Promise<ServerRecord> {
    const existing = this.reload()[key(model, version)];
    if (existing && this.running(existing)) {
      await this.waitHealthy(existing);
      return existing;
    }
    return this.start(model, version, existing?.port, existing ? existing.restarts + 1 : 0);
  }

  private async start(model: string, version: string, port?: number, restarts = 0): Promise<ServerRecord> {
    const chosen = port !== undefined && (await this.portFree(port)) ? port : await freePort();
    const logDir = join(this.opts.stateDir, 'logs');
    mkdirSync(logDir, { recursive: true });
    const log = openSync(join(logDir, `${model}-${version}.log`), 'a');
    // Decommissioned while this start waited for the port: do not bring it back.
    if (this.decommissioned.has(key(model, version)))
      throw new Error(`${model}/${version} was decommissioned while its server was starting`);
    const child = spawn(
      join(this.opts.pythonEnv, 'bin', 'mlflow'),
      [
        'models',
        'serve',
        '-m',
        `models:/${model}/${version}`,
        '--env-manager',
        'local',
        '-h',
        this.host,
        '-p',
        String(chosen),
      ],
      {
        // Its own process group, so it outlives the worker and is stopped as a whole.
        detached: true,
        stdio: ['ignore', log, log],
        env: modelServerEnv(process.env, this.opts.pythonEnv, this.opts.trackingUri),
      },
    );
    child.unref();
    if (child.pid === undefined) throw new Error(`could not start a model server for ${model}/${version}`);
    const record: ServerRecord = {
      model,
      version,
      port: chosen,
      pid: child.pid,
      startedAt: new Date().toISOString(),
      restarts,
    };
    this.reload()[key(model, version)] = record;
    this.save();
    this.opts.logger.info(
      { model, version, port: chosen, pid: child.pid, restarts },
      'model server starting',
    );
    await this.waitHealthy(record);
    this.opts.logger.info({ model, version, port: chosen }, 'model server healthy');
    return record;
  }

  private async portFree(port: number): Promise<boolean> {
    try {
      await fetch(`http://${this.host}:${port}/ping`, { signal: AbortSignal.timeout(500) });
      return false;
    } catch {
      return true;
    }
  }

  async healthy(record: ServerRecord): Promise<boolean> {
    try {
      return (await fetch(`${this.endpoint(record)}/ping`, { signal: AbortSignal.timeout(1000) })).ok;
    } catch {
      return false;
    }
  }

  private async waitHealthy(record: ServerRecord): Promise<void> {
    const deadline = Date.now() + (this.opts.startTimeoutMs ?? 120_000);
    while (!(await this.healthy(record))) {
      if (!alive(record.pid)) {
        throw new Error(
          `the model server for ${record.model}/${record.version} exited during start; see ${join(this.opts.stateDir, 'logs', `${record.model}-${record.version}.log`)}`,
        );
      }
      if (Date.now() > deadline)
        throw new Error(
          `the model server for ${record.model}/${record.version} did not become healthy on port ${record.port}`,
        );
      await new Promise((r) => setTimeout(r, 250));
    }
  }

  /** Stops the version's server and forgets it. Idempotent. */
  async decommission(model: string, version: string): Promise<void> {
    const k = key(model, version);
    // A start in progress (a deploy, or the monitor's restart) records its server when it spawns:
    // let it finish, and keep one that is still waiting for its port from spawning at all.
    this.decommissioned.add(k);
    try {
      await this.pending.get(k)?.catch(() => undefined);
    } finally {
      this.decommissioned.delete(k);
    }
    const record = this.reload()[k];
    if (!record) return;
    delete this.records[k];
    this.save();
    await this.kill(record);
    this.opts.logger.info({ model, version, port: record.port }, 'model server stopped');
  }

  private async kill(record: ServerRecord): Promise<void> {
    // A live pid that no longer serves the record is another process now: leave it alone. A dead
    // leader's group may still hold its children (uvicorn); Linux does not reuse a pid while a
    // group of that id exists, so that group is still this server's.
    if (alive(record.pid) && !this.running(record)) return;
    await stopGroup(record.pid, 10_000);
  }

  /** Restarts servers whose process died (the monitor calls this). */
  async heal(): Promise<void> {
    for (const seen of Object.values(this.reload())) {
      // Only what is still recorded now: another worker may have decommissioned it meanwhile.
      const record = this.reload()[key(seen.model, seen.version)];
      if (!record || this.running(record) || this.pending.has(key(record.model, record.version))) continue;
      this.opts.logger.warn(
        { model: record.model, version: record.version, pid: record.pid },
        'model server died; restarting',
      );
      await this.deploy(record.model, record.version).catch((err: unknown) =>
        this.opts.logger.error(
          { model: record.model, version: record.version, err },
          'model server restart failed',
        ),
      );
    }
  }

  /** Stops the monitor; servers keep running (a restarted worker adopts them). */
  close(): void {
    if (this.monitor) clearInterval(this.monitor);
    this.monitor = null;
  }

  /** Stops every server (the embedded stack's shutdown). */
  async stopAll(): Promise<void> {
    this.close();
    for (const r of Object.values(this.reload())) await this.decommission(r.model, r.version);
  }

  private save(): void {
    this.file.write(this.records);
  }
}
