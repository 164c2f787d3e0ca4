/**
 * The embedded Temporal: the Temporal CLI's dev server, started with a persistent SQLite file and
 * the UI, and the promotion search attributes registered (also on an existing database, where the
 * start-up flags do not add new ones).
 */
import type { ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { temporal } from '@temporalio/proto';
import { SEARCH_ATTRIBUTES } from '../workflows/search';
import { plainLauncher, stopProcess, type Launcher } from './children';

export { stopProcess };

const TYPE_NAMES: Record<string, string> = {
  KEYWORD: 'Keyword',
  INT: 'Int',
  TEXT: 'Text',
  BOOL: 'Bool',
  DOUBLE: 'Double',
  DATETIME: 'Datetime',
  KEYWORD_LIST: 'KeywordList',
};
const PROTO_TYPES: Record<string, temporal.api.enums.v1.IndexedValueType> = {
  KEYWORD: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_KEYWORD,
  INT: temporal.api.enums.v1.IndexedValueType.INDEXED_VALUE_TYPE_INT,
};

export interface DevServerOptions {
  /** The `temporal` executable. */
  cliPath: string;
  ip?: string;
  port: number;
  /** UI port; omit for a headless server. */
  uiPort?: number;
  /** SQLite file; omit for an in-memory server. */
  dbFile?: string;
  namespace?: string;
  /** Where the server's output goes (a file), or 'ignore'. */
  logFile?: string;
  /** How the server process is started; default a plain child process. */
  launcher?: Launcher;
}

export interface DevServer {
  address: string;
  uiUrl: string | null;
  process: ChildProcess;
  stop(): Promise<void>;
}

export async function startDevServer(opts: DevServerOptions): Promise<DevServer> {
  const ip = opts.ip ?? '127.0.0.1';
  const namespace = opts.namespace ?? 'default';
  const args = [
    'server',
    'start-dev',
    '--ip',
    ip,
    '--port',
    String(opts.port),
    '--namespace',
    namespace,
    '--log-level',
    'warn',
  ];
  if (opts.uiPort) args.push('--ui-port', String(opts.uiPort));
  else args.push('--headless');
  if (opts.dbFile) {
    mkdirSync(join(opts.dbFile, '..'), { recursive: true });
    args.push('--db-filename', opts.dbFile);
  }
  for (const sa of SEARCH_ATTRIBUTES) args.push('--search-attribute', `${sa.name}=${TYPE_NAMES[sa.type]}`);
  const out = opts.logFile ? openSync(opts.logFile, 'a') : 'ignore';
  if (!existsSync(opts.cliPath)) throw new Error(`Temporal CLI not found at ${opts.cliPath}`);
  const launched = (opts.launcher ?? plainLauncher)({
    name: 'temporal',
    label: 'Temporal dev server',
    command: opts.cliPath,
    args,
    stdio: ['ignore', out, out],
  });
  const child = launched.process;
  const address = `${ip}:${opts.port}`;
  let exited: string | null = null;
  child.on('exit', (code, signal) => (exited = `exited with ${signal ?? code}`));
  try {
    const connection = await waitForServer(address, () => exited, opts.logFile);
    try {
      await ensureSearchAttributes(connection, namespace);
    } finally {
      await connection.close();
    }
  } catch (err) {
    await launched.stop();
    throw err;
  }
  return {
    address,
    uiUrl: opts.uiPort ? `http://${ip === '0.0.0.0' ? 'localhost' : ip}:${opts.uiPort}` : null,
    process: child,
    stop: () => launched.stop(),
  };
}

async function waitForServer(
  address: string,
  exited: () => string | null,
  logFile?: string,
): Promise<Connection> {
  const deadline = Date.now() + 60_000;
  for (;;) {
    const why = exited();
    if (why) throw new Error(`the Temporal dev server ${why}${logFile ? `; see ${logFile}` : ''}`);
    try {
      const connection = await Connection.connect({ address, connectTimeout: '1s' });
      await connection.workflowService.getSystemInfo({});
      return connection;
    } catch (err) {
      if (Date.now() > deadline)
        throw new Error(`the Temporal dev server at ${address} did not answer within 60s: ${String(err)}`);
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

/** Registers any promotion search attribute the namespace lacks. Idempotent. */
export async function ensureSearchAttributes(connection: Connection, namespace: string): Promise<string[]> {
  let have = new Set<string>();
  try {
    const existing = await connection.operatorService.listSearchAttributes({ namespace });
    have = new Set(Object.keys(existing.customAttributes ?? {}));
  } catch (err) {
    // Temporal's time-skipping test server can add search attributes but not list them.
    if ((err as { code?: number }).code !== 12 /* UNIMPLEMENTED */) throw err;
  }
  const missing = SEARCH_ATTRIBUTES.filter((sa) => !have.has(sa.name));
  if (missing.length > 0) {
    await connection.operatorService.addSearchAttributes({
      namespace,
      searchAttributes: Object.fromEntries(missing.map((sa) => [sa.name, PROTO_TYPES[sa.type]!])),
    });
  }
  return missing.map((sa) => sa.name);
}
