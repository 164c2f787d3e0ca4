/**
 * The embedded stack's child bookkeeping without the stack: pid files, verification against
 * /proc, stopping leftovers of an earlier run by process group, and never touching a process whose
 * pid was reused.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdtempSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { ConflictError } from '../../src/common/errors';
import { alive, cmdline, groupAlive, runs, startTicks, stopGroup } from '../../src/common/processes';
import { findSetpriv, RunDir, type PidRecord } from '../../src/dev/children';

const others: ChildProcess[] = [];

/** A process that is not promote's: its own group, `sleep`. */
function stranger(): ChildProcess {
  const child = spawn('sleep', ['120'], { detached: true, stdio: 'ignore' });
  others.push(child);
  return child;
}

afterAll(() => {
  for (const c of others) if (c.pid && groupAlive(c.pid)) process.kill(-c.pid, 'SIGKILL');
});

const waitGone = async (pid: number) => {
  for (let i = 0; i < 100 && alive(pid); i++) await new Promise((r) => setTimeout(r, 50));
};

test.each<[string, string[] | null, string[], boolean]>([
  ['identical', ['a', 'b'], ['a', 'b'], true],
  ['an interpreter in front', ['python3', '/v/bin/mlflow', 'server'], ['/v/bin/mlflow', 'server'], true],
  ['setpriv in front', ['setpriv', '--pdeathsig', 'TERM', '--', 'x', '-p', '1'], ['x', '-p', '1'], true],
  ['another argument', ['x', '-p', '2'], ['x', '-p', '1'], false],
  ['shorter', ['-p', '1'], ['x', '-p', '1'], false],
  ['gone', null, ['x'], false],
  ['an empty command', ['x'], [], false],
])('runs: %s', (_name, argv, command, expected) => {
  expect(runs(argv, command)).toBe(expected);
});

test('stopGroup stops a whole group, with SIGKILL for a process that ignores SIGTERM', async () => {
  const child = spawn('sh', ['-c', 'trap "" TERM; sleep 120 & sleep 120; :'], {
    detached: true,
    stdio: 'ignore',
  });
  others.push(child);
  await new Promise((r) => setTimeout(r, 200));
  expect(groupAlive(child.pid!)).toBe(true);
  expect(await stopGroup(child.pid!, 500)).toBe('killed');
  expect(groupAlive(child.pid!)).toBe(false);
});

test('launch records the child; the next claim of the folder stops it by group and says so', async () => {
  const data = mkdtempSync(join(tmpdir(), 'promote-run-'));
  const said: string[] = [];
  const first = await RunDir.claim(data, (l) => said.push(l));
  // A child with a child of its own in its group (as MLflow has uvicorn).
  const launched = first.launch({
    name: 'thing',
    label: 'test thing',
    command: 'sh',
    args: ['-c', 'sleep 120 & sleep 120; :'],
    stdio: 'ignore',
  });
  const pid = launched.process.pid!;
  const record = JSON.parse(readFileSync(join(data, 'run', 'thing.pid'), 'utf8')) as PidRecord;
  expect(record).toMatchObject({
    name: 'thing',
    pid,
    pgid: pid,
    command: ['sh', '-c', 'sleep 120 & sleep 120; :'],
  });
  expect(record.startTicks).toBe(startTicks(pid));
  await new Promise((r) => setTimeout(r, 300));
  // setpriv has exec'd the command by now (where it is installed).
  expect(runs(cmdline(pid), record.command)).toBe(true);
  if (findSetpriv()) expect(cmdline(pid)![0]).toBe('sh');

  // The owner "crashed" (its record stays; this test process is its own next owner).
  const next = await RunDir.claim(data, (l) => said.push(l));
  expect(said).toContain(`stopped a leftover test thing (pid ${pid}) from an earlier run`);
  expect(groupAlive(pid)).toBe(false);
  expect(readdirSync(join(data, 'run'))).toEqual(['promote.pid']);
  await next.release();
  expect(readdirSync(join(data, 'run'))).toEqual([]);
});

test('a pid file whose pid now belongs to another process: left alone, file dropped, nothing said', async () => {
  const data = mkdtempSync(join(tmpdir(), 'promote-run-'));
  const other = stranger();
  await new Promise((r) => setTimeout(r, 100));
  const record: PidRecord = {
    name: 'mlflow',
    label: 'MLflow server',
    pid: other.pid!,
    pgid: other.pid!,
    startTicks: startTicks(other.pid!),
    startedAt: new Date().toISOString(),
    command: ['/venv/bin/mlflow', 'server', '--port', '5050'],
    marker: 'c0ffee00-0000-4000-8000-000000000000',
  };
  await (await RunDir.claim(data, () => undefined)).release();
  const said: string[] = [];
  // Another command line; or the same command line with another start time (a reused pid too).
  for (const r of [record, { ...record, command: ['sleep', '120'], startTicks: record.startTicks! - 1 }]) {
    writeFileSync(join(data, 'run', 'mlflow.pid'), JSON.stringify(r));
    const run = await RunDir.claim(data, (l) => said.push(l));
    expect(alive(other.pid!)).toBe(true);
    expect(readdirSync(join(data, 'run'))).toEqual(['promote.pid']);
    await run.release();
  }
  expect(said.filter((l) => l.startsWith('stopped'))).toEqual([]);
});

test('a folder in use by another live promote is refused, not cleaned', async () => {
  const data = mkdtempSync(join(tmpdir(), 'promote-run-'));
  await (await RunDir.claim(data, () => undefined)).release();
  const other = stranger();
  await new Promise((r) => setTimeout(r, 100));
  writeFileSync(
    join(data, 'run', 'promote.pid'),
    JSON.stringify({ pid: other.pid, startTicks: startTicks(other.pid!), command: ['sleep', '120'] }),
  );
  await expect(RunDir.claim(data, () => undefined)).rejects.toThrow(ConflictError);
  await expect(RunDir.claim(data, () => undefined)).rejects.toThrow(`another promote (pid ${other.pid})`);
  process.kill(-other.pid!, 'SIGKILL');
  await waitGone(other.pid!);
  // Once it is gone the folder is free again.
  await (await RunDir.claim(data, () => undefined)).release();
});

test('a folder claimed by another running promote process (started as `node` with flags) is refused', async () => {
  const data = mkdtempSync(join(tmpdir(), 'promote-run-'));
  // `node` found on PATH and node flags: its /proc command line differs from its process.argv.
  const other = spawn('node', ['--import', 'tsx', join(__dirname, 'claim-fixture.ts'), data], {
    detached: true,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  others.push(other);
  await new Promise<void>((resolve, reject) => {
    other.stdout.on('data', (d: Buffer) => d.toString().includes('claimed') && resolve());
    other.on('exit', (code) => reject(new Error(`the fixture exited with ${code}`)));
  });
  await expect(RunDir.claim(data, () => undefined)).rejects.toThrow(`another promote (pid ${other.pid})`);
  process.kill(-other.pid!, 'SIGKILL');
  await waitGone(other.pid!);
});
