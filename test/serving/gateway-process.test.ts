/**
 * The gateway as its own process (src/serving/gateway/main.ts): the curl reproduction
 * against it, its secrets from the environment or files, and its last-resort handlers.
 */
import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pino from 'pino';
import { freePort } from '../../src/common/net';
import { stopProcess } from '../../src/dev/temporal';
import { readConfig } from '../../src/serving/gateway/config';
import { installLastResort } from '../../src/serving/gateway/last-resort';
import { upstream, type Upstream } from '../helpers/gateway';

const MAIN = join(__dirname, '../../src/serving/gateway/main.ts');
const run = promisify(execFile);

function gatewayEnv(dir: string, port: number, extra: Record<string, string> = {}) {
  return {
    PATH: process.env.PATH ?? '',
    PROMOTE_GATEWAY_PORT: String(port),
    PROMOTE_GATEWAY_STATE_DIR: join(dir, 'gateway'),
    LOG_LEVEL: 'warn',
    ...extra,
  };
}

/** Runs main.ts expecting it to refuse to start; resolves with its exit code and stderr. */
function refusal(env: Record<string, string>): { code: number | null; stderr: string } {
  const result = spawnSync(process.execPath, ['--import', 'tsx', MAIN], {
    env,
    encoding: 'utf8',
    timeout: 30_000,
  });
  return { code: result.status, stderr: result.stderr };
}

describe('the gateway process', () => {
  let dir: string;
  let port: number;
  let child: ChildProcess;
  let model: Upstream;
  let base: string;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'promote-gwp-'));
    port = await freePort();
    base = `http://127.0.0.1:${port}`;
    model = await upstream(0.4);
    writeFileSync(join(dir, 'admin-token'), '  admin-from-file\n', { mode: 0o600 });
    child = spawn(process.execPath, ['--import', 'tsx', MAIN], {
      env: gatewayEnv(dir, port, {
        PROMOTE_GATEWAY_TOKEN_FILE: join(dir, 'admin-token'),
        PROMOTE_INGEST_TOKEN: 'ingest-from-env',
        PROMOTE_PREDICTION_RETENTION: '7d',
      }),
      stdio: ['ignore', 'ignore', 'pipe'],
    });
    for (let i = 0; i < 300; i++) {
      const up = await fetch(`${base}/health`).then(
        (r) => r.ok,
        () => false,
      );
      if (up) break;
      if (child.exitCode !== null) throw new Error(`the gateway exited with ${child.exitCode}`);
      await new Promise((r) => setTimeout(r, 100));
    }
    const admin = (method: string, path: string, body: unknown) =>
      fetch(`${base}/admin/${path}`, {
        method,
        headers: { authorization: 'Bearer admin-from-file' },
        body: JSON.stringify(body),
      });
    expect((await admin('PUT', 'backends/fraud/v1', { url: model.url })).status).toBe(200);
    expect((await admin('PUT', 'routes/fraud', { weights: { v1: 100 } })).status).toBe(200);
  }, 60_000);

  afterAll(async () => {
    if (child) await stopProcess(child);
    model?.close();
  });

  test("the issue's curl reproduction: a 400 JSON answer, and the process keeps serving", async () => {
    const { stdout } = await run('curl', [
      '-sS',
      '-w',
      '\n%{http_code}',
      '-X',
      'POST',
      `${base}/models/%E0%A4%A/invocations`,
      '-d',
      '{}',
    ]);
    const [body, code] = stdout.split('\n');
    expect([code, JSON.parse(body!)]).toEqual([
      '400',
      { error: 'path segment 2 ("%E0%A4%A") is not valid percent-encoding' },
    ]);
    expect(child.exitCode).toBeNull();
    const answer = await fetch(`${base}/models/fraud/invocations`, {
      method: 'POST',
      body: JSON.stringify({ dataframe_split: { columns: ['a'], data: [[1]] } }),
    });
    expect([answer.status, await answer.json()]).toEqual([200, { predictions: [0.4] }]);
  });

  test('the admin token comes from the file (trimmed), the ingest token from the environment', async () => {
    const labels = (token: string) =>
      fetch(`${base}/models/fraud/labels`, {
        method: 'POST',
        headers: { authorization: `Bearer ${token}` },
        body: JSON.stringify({ labels: [] }),
      }).then((r) => r.status);
    expect(await labels('ingest-from-env')).toBe(400); // authorised; the batch is empty
    expect(await labels('admin-from-file')).toBe(401);
    const state = await fetch(`${base}/admin/state`, {
      headers: { authorization: 'Bearer admin-from-file' },
    });
    expect(state.status).toBe(200);
  });
});

describe('refusing to start', () => {
  const dir = mkdtempSync(join(tmpdir(), 'promote-gwp-'));

  test.each([
    [
      {},
      'PROMOTE_GATEWAY_TOKEN or PROMOTE_GATEWAY_TOKEN_FILE is required (the bearer token of the admin API)',
    ],
    [{ PROMOTE_GATEWAY_TOKEN: 'a' }, 'PROMOTE_INGEST_TOKEN or PROMOTE_INGEST_TOKEN_FILE is required'],
    [
      { PROMOTE_GATEWAY_TOKEN: 'a', PROMOTE_INGEST_TOKEN: 'a' },
      'PROMOTE_INGEST_TOKEN must differ from PROMOTE_GATEWAY_TOKEN',
    ],
    [
      { PROMOTE_GATEWAY_TOKEN_FILE: '/nonexistent/token', PROMOTE_INGEST_TOKEN: 'b' },
      'PROMOTE_GATEWAY_TOKEN_FILE: cannot read /nonexistent/token',
    ],
    [
      { PROMOTE_GATEWAY_TOKEN: 'a', PROMOTE_INGEST_TOKEN: 'b', PROMOTE_PREDICTION_RETENTION: 'forever' },
      'PROMOTE_PREDICTION_RETENTION: "forever" is not a duration',
    ],
  ])('with %j it exits 1 and says why', (extra, message) => {
    const { code, stderr } = refusal(gatewayEnv(dir, 0, extra));
    expect(code).toBe(1);
    expect(stderr).toContain(`promote-gateway: ${message}`);
  });

  test('an empty token file is refused, a set token file is read once and trimmed', () => {
    writeFileSync(join(dir, 'empty'), ' \n');
    expect(() =>
      readConfig({ PROMOTE_GATEWAY_TOKEN_FILE: join(dir, 'empty'), PROMOTE_INGEST_TOKEN: 'b' }),
    ).toThrow(`PROMOTE_GATEWAY_TOKEN_FILE: ${join(dir, 'empty')} is empty`);
    writeFileSync(join(dir, 'ingest'), 'ingest-secret\n');
    const config = readConfig({ PROMOTE_GATEWAY_TOKEN: 'a', PROMOTE_INGEST_TOKEN_FILE: join(dir, 'ingest') });
    expect(config).toMatchObject({
      adminToken: 'a',
      ingestToken: 'ingest-secret',
      retentionMs: 30 * 86_400_000,
    });
    expect(
      readConfig({
        PROMOTE_GATEWAY_TOKEN: 'a',
        PROMOTE_INGEST_TOKEN: 'b',
        PROMOTE_PREDICTION_RETENTION: '12h',
      }).retentionMs,
    ).toBe(12 * 3_600_000);
  });
});

test('the last-resort handlers log and count, and leave the process running', () => {
  const proc = new EventEmitter();
  const lines: string[] = [];
  const logger = pino({ level: 'info' }, { write: (line: string) => lines.push(line) });
  const counted: string[] = [];
  installLastResort(proc, logger, (kind) => counted.push(kind));
  proc.emit('uncaughtException', new Error('boom'));
  proc.emit('unhandledRejection', new Error('late'));
  expect(counted).toEqual(['exception', 'rejection']);
  expect(lines.map((l) => JSON.parse(l) as { msg: string; err: { message: string } })).toEqual([
    expect.objectContaining({
      msg: expect.stringMatching(/^uncaught exception/),
      err: expect.objectContaining({ message: 'boom' }),
    }),
    expect.objectContaining({
      msg: expect.stringMatching(/^unhandled promise rejection/),
      err: expect.objectContaining({ message: 'late' }),
    }),
  ]);
});
