/**
 * Benchmark: does reading the prediction log slow inference? The gateway runs in its own process
 * on an SQLite prediction log seeded with a week of rows; this process drives requests open-loop
 * through it to fixture model servers, first alone, then while measurement reads (1h/1d/7d
 * windows), shadow-pair and labelled-row reads and a retention prune run. It prints one JSON object:
 * the gateway's event-loop delay (perf_hooks.monitorEventLoopDelay, measured inside the gateway),
 * inference latency with and without the reads, read durations, rows seeded.
 *
 *   npm run bench:reads -- [--rows 1000000] [--rate 1000] [--seconds 15] [--keep]
 */
import { fork, type ChildProcess } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { Agent, createServer, request, type Server } from 'node:http';
import { cpus, loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import Database from 'better-sqlite3';
import pino from 'pino';
import { quantile } from '../src/analysis/stats';
import { SqlitePredictionLog } from '../src/serving/gateway/prediction-log';
import { SQL, toRow } from '../src/serving/gateway/prediction-log/queries';
import { Gateway } from '../src/serving/gateway/server';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const ROWS = arg('rows', 1_000_000);
const RATE = arg('rate', 1000);
const SECONDS = arg('seconds', 15);
const DAY = 86_400_000;
const SPAN_MS = 7 * DAY;
const MODEL = 'bench';
const TOKEN = 'bench-admin-token';
const round = (n: number) => Number(n.toFixed(2));

type ToChild = { op: 'loop-start' } | { op: 'loop-stop' } | { op: 'prune' } | { op: 'stop' };
type FromChild =
  | { op: 'ready'; url: string }
  | { op: 'loop'; p50: number; p99: number; max: number }
  | { op: 'pruned'; rows: number; ms: number };

// ---------------------------------------------------------------- the gateway process

/** Seeds `requests` requests over the last week straight into the log's table (before serving). */
function seed(file: string, requests: number, nowMs: number): number {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  const insert = db.prepare(SQL.insert);
  const label = db.prepare(SQL.labelRequest);
  let rows = 0;
  const batch = db.transaction((from: number, to: number) => {
    for (let i = from; i < to; i++) {
      const atMs = nowMs - SPAN_MS + Math.floor((i / requests) * SPAN_MS);
      const candidate = i % 20 === 0;
      const base = {
        requestId: `seed-${i}`,
        clientRequestId: null,
        entityKey: `e${i % 50_000}`,
        model: MODEL,
        decision: null,
        atMs,
      };
      const latencyMs = 2 + Math.abs(Math.sin(i)) * 20 + (i % 997 === 0 ? 300 : 0);
      const status = i % 113 === 0 ? 503 : 200;
      const score = (i % 1000) / 1000;
      insert.run(
        toRow({ ...base, version: candidate ? 'v2' : 'v1', role: 'primary', score, latencyMs, status }),
      );
      rows++;
      if (!candidate && i % 2 === 0) {
        insert.run(
          toRow({
            ...base,
            version: 'v2',
            role: 'shadow',
            score: 1 - score,
            latencyMs: latencyMs + 1,
            status: 200,
          }),
        );
        rows++;
      }
      if (i % 10 === 0)
        label.run({
          label: i % 3 === 0 ? 1 : 0,
          now_ms: atMs + 3_600_000,
          model: MODEL,
          key: base.requestId,
        });
    }
  });
  for (let i = 0; i < requests; i += 50_000) batch(i, Math.min(requests, i + 50_000));
  db.close();
  return rows;
}

async function child(): Promise<void> {
  const dir = process.env.BENCH_DIR!;
  const file = join(dir, 'predictions.db');
  // Retention of 6 days: the prune during the reads phase deletes the oldest day of the week.
  const log = new SqlitePredictionLog(file, { retentionMs: 6 * DAY, pruneEveryMs: 0 });
  await log.flush();
  const gateway = new Gateway({
    stateDir: dir,
    log,
    adminToken: TOKEN,
    ingestToken: `${TOKEN}-ingest`,
    logger: pino({ level: 'warn' }),
  });
  const { url } = await gateway.listen(0);
  const loop = monitorEventLoopDelay({ resolution: 1 });
  const send = (m: FromChild) => process.send!(m);
  process.on('message', (m: ToChild) => {
    if (m.op === 'loop-start') {
      loop.reset();
      loop.enable();
    } else if (m.op === 'loop-stop') {
      loop.disable();
      const ms = (ns: number) => round(ns / 1e6);
      send({ op: 'loop', p50: ms(loop.percentile(50)), p99: ms(loop.percentile(99)), max: ms(loop.max) });
    } else if (m.op === 'prune') {
      const started = performance.now();
      void log.prune().then((rows) => send({ op: 'pruned', rows, ms: round(performance.now() - started) }));
    } else {
      void gateway
        .close()
        .then(() => log.close())
        .then(() => process.exit(0));
    }
  });
  send({ op: 'ready', url });
}

// ---------------------------------------------------------------- the driver process

async function fixture(score: number): Promise<{ url: string; server: Server }> {
  const server = createServer((req, res) => {
    if (req.url === '/ping') return void res.end('ok');
    req.resume();
    req.on('end', () => res.end(JSON.stringify({ predictions: [score] })));
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const address = server.address();
  return { url: `http://127.0.0.1:${typeof address === 'object' && address ? address.port : 0}`, server };
}

function next<T extends FromChild['op']>(gw: ChildProcess, op: T): Promise<Extract<FromChild, { op: T }>> {
  return new Promise((resolve, reject) => {
    const exited = (code: number | null) =>
      reject(new Error(`the gateway process exited (${code}) before "${op}"`));
    const on = (m: FromChild) => {
      if (m.op !== op) return;
      gw.off('message', on);
      gw.off('exit', exited);
      resolve(m as Extract<FromChild, { op: T }>);
    };
    gw.on('message', on);
    gw.once('exit', exited);
  });
}

const agent = new Agent({ keepAlive: true, maxSockets: 128 });

function call(
  url: string,
  method: string,
  body?: string,
  headers: Record<string, string> = {},
): Promise<{ status: number; bytes: number }> {
  return new Promise((resolve, reject) => {
    const req = request(
      url,
      { method, agent, headers: { 'content-type': 'application/json', ...headers } },
      (res) => {
        let bytes = 0;
        res.on('data', (c: Buffer) => (bytes += c.length));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, bytes }));
        res.on('error', reject);
      },
    );
    req.on('error', reject);
    req.end(body);
  });
}

/** `RATE` requests per second for `SECONDS`, each sent on time whatever the others do (open loop). */
async function openLoop(
  gatewayUrl: string,
): Promise<{ requests: number; errors: number; p50_ms: number; p99_ms: number; max_ms: number }> {
  const latencies: number[] = [];
  let errors = 0;
  const total = RATE * SECONDS;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  const body = JSON.stringify({ dataframe_split: { columns: ['amount', 'age'], data: [[12.5, 40]] } });
  for (let i = 0; i < total; i++) {
    const wait = start + (i * 1000) / RATE - performance.now();
    if (wait > 1) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      (async () => {
        const t = performance.now();
        const answer = await call(`${gatewayUrl}/models/${MODEL}/invocations`, 'POST', body, {
          'x-entity-id': `e${i % 5000}`,
        }).catch(() => null);
        if (answer?.status === 200) latencies.push(performance.now() - t);
        else errors++;
      })(),
    );
  }
  await Promise.all(pending);
  return {
    requests: total,
    errors,
    p50_ms: round(quantile(latencies, 0.5)),
    p99_ms: round(quantile(latencies, 0.99)),
    max_ms: round(Math.max(...latencies)),
  };
}

/** Reads in a loop until `stop()`: what a promotion's providers ask while it runs. */
function readLoop(gatewayUrl: string, toMs: number) {
  const durations = new Map<string, number[]>();
  const rows = new Map<string, number>();
  let stopped = false;
  const reads: [string, string][] = [
    ['measure_error_rate_1h', `measure/${MODEL}/v2?metric=error_rate&from=${toMs - 3_600_000}&to=${toMs}`],
    ['measure_latency_p99_1d', `measure/${MODEL}/v2?metric=latency_p99_ms&from=${toMs - DAY}&to=${toMs}`],
    [
      'measure_latency_p99_7d_champion',
      `measure/${MODEL}/v1?metric=latency_p99_ms&from=${toMs - SPAN_MS}&to=${toMs}`,
    ],
    ['pairs_7d_limit_50000', `pairs/${MODEL}?champion=v1&candidate=v2&from=${toMs - SPAN_MS}&to=${toMs}`],
    ['labelled_7d_limit_50000', `labelled/${MODEL}/v1?from=${toMs - SPAN_MS}&to=${toMs}`],
  ];
  const done = (async () => {
    for (let round = 0; !stopped && round < 10_000; round++)
      for (const [name, path] of reads) {
        if (stopped) break;
        const t = performance.now();
        const answer = await call(`${gatewayUrl}/admin/${path}`, 'GET', undefined, {
          authorization: `Bearer ${TOKEN}`,
        });
        if (answer.status !== 200) throw new Error(`${name}: HTTP ${answer.status}`);
        durations.set(name, [...(durations.get(name) ?? []), performance.now() - t]);
        rows.set(name, answer.bytes);
      }
  })();
  return {
    stop: async () => {
      stopped = true;
      await done;
      return Object.fromEntries(
        [...durations].map(([name, ds]) => [
          name,
          {
            runs: ds.length,
            p50_ms: round(quantile(ds, 0.5)),
            max_ms: round(Math.max(...ds)),
            answer_bytes: rows.get(name),
          },
        ]),
      );
    },
  };
}

/** Creates the log's schema and seeds it here, so the gateway process starts with a clean heap. */
async function prepare(): Promise<{ dir: string; seeded: number; seedSeconds: number; nowMs: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'promote-bench-reads-'));
  const file = join(dir, 'predictions.db');
  const log = new SqlitePredictionLog(file, { pruneEveryMs: 0 });
  await log.flush(); // the schema exists
  await log.close();
  const nowMs = Date.now();
  const t = performance.now();
  const seeded = seed(file, ROWS, nowMs);
  return { dir, seeded, seedSeconds: round((performance.now() - t) / 1000), nowMs };
}

async function driver(): Promise<void> {
  const loadBefore = loadavg()[0]!;
  const prepared = await prepare();
  const v1 = await fixture(0.2);
  const v2 = await fixture(0.7);
  const gw = fork(__filename, ['--child', ...process.argv.slice(2)], {
    env: { ...process.env, BENCH_DIR: prepared.dir },
    execArgv: ['--import', 'tsx', ...(process.env.BENCH_TRACE_GC ? ['--trace-gc'] : [])],
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  try {
    const ready = await next(gw, 'ready');
    const admin = (method: string, path: string, body: unknown) =>
      call(`${ready.url}/admin/${path}`, method, JSON.stringify(body), { authorization: `Bearer ${TOKEN}` });
    await admin('PUT', `backends/${MODEL}/v1`, { url: v1.url });
    await admin('PUT', `backends/${MODEL}/v2`, { url: v2.url });
    await admin('PUT', `leases/${MODEL}`, {
      holder: 'bench/1',
      champion: 'v1',
      candidate: 'v2',
      ttlMs: 3_600_000,
    });
    const route = await admin('PUT', `routes/${MODEL}`, { weights: { v1: 95, v2: 5 }, lease: 'bench/1' });
    if (route.status !== 200) throw new Error(`route: HTTP ${route.status}`);

    const phase = async (withReads: boolean) => {
      gw.send({ op: 'loop-start' } satisfies ToChild);
      const reads = withReads ? readLoop(ready.url, prepared.nowMs) : null;
      const pruned = withReads ? next(gw, 'pruned') : null;
      if (withReads) gw.send({ op: 'prune' } satisfies ToChild);
      const inference = await openLoop(ready.url);
      const readStats = await reads?.stop();
      gw.send({ op: 'loop-stop' } satisfies ToChild);
      const loop = await next(gw, 'loop');
      return {
        inference,
        event_loop_delay_ms: { p50: loop.p50, p99: loop.p99, max: loop.max },
        reads: readStats,
        prune: await pruned,
      };
    };
    await openLoop(ready.url); // warm-up (connections, JIT)
    const alone = await phase(false);
    const withReads = await phase(true);
    process.stdout.write(
      `${JSON.stringify(
        {
          command: `npm run bench:reads -- --rows ${ROWS} --rate ${RATE} --seconds ${SECONDS}`,
          machine: {
            cores: cpus().length,
            node: process.version,
            // The machine is shared: its load says how much of the latency tail is other work.
            load_average_1m: { before: round(loadBefore), after: round(loadavg()[0]!) },
          },
          prediction_log: {
            backend: 'sqlite (worker threads)',
            requests_seeded: ROWS,
            rows_seeded: prepared.seeded,
            span: {
              days: SPAN_MS / DAY,
              from: new Date(prepared.nowMs - SPAN_MS).toISOString(),
              to: new Date(prepared.nowMs).toISOString(),
            },
            seed_seconds: prepared.seedSeconds,
          },
          load: { rate_per_s: RATE, seconds_per_phase: SECONDS, route: 'v1 95% / v2 5%, no shadow' },
          without_reads: {
            inference_latency: alone.inference,
            gateway_event_loop_delay_ms: alone.event_loop_delay_ms,
          },
          with_reads: {
            inference_latency: withReads.inference,
            gateway_event_loop_delay_ms: withReads.event_loop_delay_ms,
            read_durations: withReads.reads,
            prune: withReads.prune ? { rows_deleted: withReads.prune.rows, ms: withReads.prune.ms } : null,
          },
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    if (gw.exitCode === null) {
      const exited = new Promise((r) => gw.once('exit', r));
      gw.send({ op: 'stop' } satisfies ToChild);
      await exited;
    }
    v1.server.close();
    v2.server.close();
    agent.destroy();
    // The seeded log is hundreds of MB: keep it only when asked.
    if (!process.argv.includes('--keep')) rmSync(prepared.dir, { recursive: true, force: true });
  }
}

(process.argv.includes('--child') ? child() : driver()).catch((err: unknown) => {
  process.stderr.write(`bench/gateway-reads: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
