/** A throwaway PostgreSQL server (Debian's binaries) on a free loopback port, for tests. */
import { execFileSync } from 'node:child_process';
import { chownSync, mkdtempSync, readdirSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { freePort } from './tools';

export interface TestPostgres {
  url: string;
  stop(): void;
  /** Stops the server (fast shutdown: connections are cut), waits `downMs`, starts it again. */
  restart(downMs: number): Promise<void>;
}

function bin(name: string): string {
  const versions = readdirSync('/usr/lib/postgresql').sort();
  if (versions.length === 0)
    throw new Error('PostgreSQL server binaries are missing (npm test installs them)');
  return join('/usr/lib/postgresql', versions[versions.length - 1]!, 'bin', name);
}

/** initdb refuses to run as root: as root, run the server as the postgres user. */
function run(args: string[]): void {
  const [command, ...rest] = args as [string, ...string[]];
  if (userInfo().uid === 0)
    execFileSync('runuser', ['-u', 'postgres', '--', command, ...rest], { stdio: 'ignore' });
  else execFileSync(command, rest, { stdio: 'ignore' });
}

export async function startPostgres(): Promise<TestPostgres> {
  const dir = mkdtempSync(join(tmpdir(), 'promote-pg-'));
  if (userInfo().uid === 0) {
    const pg = execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' }).trim();
    const gid = execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' }).trim();
    chownSync(dir, Number(pg), Number(gid));
  }
  const port = await freePort();
  const data = join(dir, 'data');
  run([bin('initdb'), '-D', data, '-A', 'trust', '-U', 'promote', '--no-sync']);
  const start = () =>
    run([
      bin('pg_ctl'),
      '-D',
      data,
      '-l',
      join(dir, 'server.log'),
      '-w',
      '-o',
      `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off`,
      'start',
    ]);
  const stop = () => run([bin('pg_ctl'), '-D', data, '-m', 'fast', '-w', 'stop']);
  start();
  return {
    url: `postgres://promote@127.0.0.1:${port}/postgres`,
    stop,
    restart: async (downMs) => {
      stop();
      await new Promise((r) => setTimeout(r, downMs));
      start();
    },
  };
}
