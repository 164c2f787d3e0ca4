/**
 * The data plane at production rates: what the gateway costs next to nginx, in one run on one
 * machine. Fixture model servers that answer at once (one answering in 100 ms for the slow-shadow
 * case), an open-loop load generator (vegeta), and three paths in front of the same fixtures:
 * direct, the gateway (its own process, as deployed), and nginx (`split_clients` on the entity
 * header, `mirror` for shadowing; config generated here). Cases at 300 and 1,000 requests/s: a 5%
 * split, the split with 100% mirroring, 100% mirroring to a shadow answering at once and to one
 * answering in 100 ms; then a sweep for the highest rate the gateway holds with p99 under 10 ms;
 * then, on the same live gateway under load, the time from a rollback decision (the admin calls a
 * rollback makes) to the last request the candidate's server received, over many trials. Finally
 * the gateway is stopped cleanly and its prediction log is counted against the requests sent.
 * Prints one JSON object.
 *
 *   npm run bench:gateway -- [--seconds 10] [--trials 100] [--processes N] [--quick]
 * (scripts/bench-gateway.sh installs nginx and vegeta if missing)
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { availableParallelism, cpus, tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { quantile } from '../src/analysis/stats';
import { freePort } from '../src/common/net';
import { stopProcess } from '../src/dev/temporal';
import { GatewayClient } from '../src/providers/local/gateway-client';

const run = promisify(execFile);
const argv = process.argv.slice(2);
const flag = (name: string) => argv.includes(`--${name}`);
const arg = (name: string, fallback: number) => {
  const i = argv.indexOf(`--${name}`);
  const v = i >= 0 ? Number(argv[i + 1]) : fallback;
  if (!Number.isFinite(v) || v <= 0) throw new Error(`--${name}: expected a positive number`);
  return v;
};
const QUICK = flag('quick');
/** Gateway processes (PROMOTE_GATEWAY_PROCESSES); absent: the gateway's default (one per core). */
const PROCESSES = argv.includes('--processes') ? Math.round(arg('processes', 1)) : null;
const SECONDS = arg('seconds', QUICK ? 3 : 10);
const TRIALS = Math.round(arg('trials', QUICK ? 20 : 100));
/** Alternating rounds of the fast and the slow shadow. */
const ROUNDS = QUICK ? 1 : 3;
const VEGETA = process.env.PROMOTE_VEGETA ?? 'vegeta';
const NGINX = process.env.PROMOTE_NGINX ?? 'nginx';
const ROOT = resolve(__dirname, '..');
const ADMIN = 'bench-admin-token';
const ENTITIES = 1000;
/** The split model (v1 95%, v2 5%) and the mirror-only model (v1 100%, v2 shadow). */
const SPLIT = 'bench-split';
const MIRROR = 'bench-mirror';

/** A request body like a tabular model's: 30 features in MLflow's dataframe_split form. */
function body(i: number): string {
  const columns = Array.from({ length: 30 }, (_, k) => `f${k}`);
  const row = columns.map((_, k) => Number((Math.sin(i * 31 + k) * 100).toFixed(4)));
  return JSON.stringify({ dataframe_split: { columns, data: [row] } });
}

interface Case {
  p50_ms: number;
  p99_ms: number;
  max_ms: number;
  requests: number;
  success: number;
  rate_achieved: number;
}

interface VegetaReport {
  latencies: { '50th': number; '99th': number; max: number };
  requests: number;
  success: number;
  rate: number;
  status_codes?: Record<string, number>;
  errors?: string[] | null;
}

const ms = (ns: number) => Number((ns / 1e6).toFixed(3));

class Load {
  private readonly files = new Map<string, string>();
  constructor(private readonly dir: string) {}

  /** A vegeta targets file for `url`: one target per entity, the entity in the x-entity-id header. */
  private targets(url: string): string {
    let file = this.files.get(url);
    if (file) return file;
    file = join(this.dir, `targets-${this.files.size}.json`);
    const lines = Array.from({ length: ENTITIES }, (_, i) =>
      JSON.stringify({
        method: 'POST',
        url,
        body: Buffer.from(body(i)).toString('base64'),
        header: { 'content-type': ['application/json'], 'x-entity-id': [`e${i}`] },
      }),
    );
    writeFileSync(file, `${lines.join('\n')}\n`);
    this.files.set(url, file);
    return file;
  }

  /** Sends `rate` requests/s for `seconds` (open loop) and reads vegeta's report. */
  async attack(
    url: string,
    rate: number,
    seconds: number,
  ): Promise<Case & { codes: Record<string, number> }> {
    const out = join(this.dir, 'results.bin');
    await run(
      VEGETA,
      [
        'attack',
        '-format=json',
        `-targets=${this.targets(url)}`,
        `-rate=${rate}/s`,
        `-duration=${seconds}s`,
        '-timeout=10s',
        '-keepalive=true',
        `-output=${out}`,
      ],
      { maxBuffer: 1 << 20 },
    );
    const { stdout } = await run(VEGETA, ['report', '-type=json', out], { maxBuffer: 16 << 20 });
    const r = JSON.parse(stdout) as VegetaReport;
    return {
      p50_ms: ms(r.latencies['50th']),
      p99_ms: ms(r.latencies['99th']),
      max_ms: ms(r.latencies.max),
      requests: r.requests,
      success: r.success,
      rate_achieved: Number(r.rate.toFixed(1)),
      codes: r.status_codes ?? {},
    };
  }
}

/** Starts a child and waits for its port to answer `path` with any HTTP status. */
async function started(child: ChildProcess, url: string, what: string): Promise<void> {
  let exited: string | null = null;
  child.once('exit', (code, signal) => (exited = `${what} exited with ${signal ?? code}`));
  for (let i = 0; i < 300; i++) {
    if (exited) throw new Error(exited);
    const ok = await fetch(url, { signal: AbortSignal.timeout(1000) }).then(
      () => true,
      () => false,
    );
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`${what} did not answer ${url} within 30 s`);
}

function nginxConfig(
  dir: string,
  port: number,
  up: { v1: number; v2: number; slow: number },
  mirror: { split: string | null; mirror: string },
): string {
  const upstream = (name: string, p: number) =>
    `  upstream ${name} { server 127.0.0.1:${p}; keepalive 128; }`;
  const proxy = 'proxy_http_version 1.1; proxy_set_header Connection "";';
  const mirrorLines = (to: string | null) => (to ? `mirror /mirror-${to}; mirror_request_body on;` : '');
  return `worker_processes auto;
daemon off;
pid ${dir}/nginx.pid;
error_log ${dir}/error.log warn;
events { worker_connections 8192; }
http {
  access_log off;
  client_body_buffer_size 1m;
  client_body_temp_path ${dir}/body;
  proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi;
  uwsgi_temp_path ${dir}/uwsgi;
  scgi_temp_path ${dir}/scgi;
  keepalive_requests 1000000;
${upstream('v1', up.v1)}
${upstream('v2', up.v2)}
${upstream('slow', up.slow)}
  split_clients "\${http_x_entity_id}" $version { 5% v2; * v1; }
  server {
    listen 127.0.0.1:${port};
    location = /models/${SPLIT}/invocations { ${mirrorLines(mirror.split)} proxy_pass http://$version/invocations; ${proxy} }
    location = /models/${MIRROR}/invocations { ${mirrorLines(mirror.mirror)} proxy_pass http://v1/invocations; ${proxy} }
    location = /mirror-v2 { internal; proxy_pass http://v2/invocations; ${proxy} }
    location = /mirror-slow { internal; proxy_pass http://slow/invocations; ${proxy} }
  }
}
`;
}

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'promote-bench-gateway-'));
  chmodSync(dir, 0o755); // nginx's workers run as an unprivileged user
  const children: ChildProcess[] = [];
  const spawnChild = (command: string, args: string[], env: NodeJS.ProcessEnv = process.env) => {
    const child = spawn(command, args, { env, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(child);
    return child;
  };
  try {
    const fixture = async (delayMs: number) => {
      const port = await freePort();
      const child = spawnChild(process.execPath, [
        '--import',
        'tsx',
        join(__dirname, 'fixtures/upstream.ts'),
        String(port),
        String(delayMs),
      ]);
      const url = `http://127.0.0.1:${port}`;
      await started(child, `${url}/ping`, `fixture upstream :${port}`);
      return { port, url };
    };
    const v1 = await fixture(0);
    const v2 = await fixture(0);
    const slow = await fixture(100);

    // The gateway as deployed: the built process, SQLite prediction log in its state folder.
    const gatewayPort = await freePort();
    const stateDir = join(dir, 'gateway');
    const gatewayProcess = spawnChild(process.execPath, [join(ROOT, 'dist/serving/gateway/main.js')], {
      ...process.env,
      PROMOTE_GATEWAY_PORT: String(gatewayPort),
      PROMOTE_GATEWAY_STATE_DIR: stateDir,
      PROMOTE_GATEWAY_TOKEN: ADMIN,
      PROMOTE_INGEST_TOKEN: `${ADMIN}-ingest`,
      ...(PROCESSES === null ? {} : { PROMOTE_GATEWAY_PROCESSES: String(PROCESSES) }),
      LOG_LEVEL: 'warn',
    });
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
    await started(gatewayProcess, `${gatewayUrl}/health`, 'the gateway');
    const gateway = new GatewayClient(gatewayUrl, ADMIN);
    const lease = 'bench/gateway';
    const setUp = async (model: string, candidate: string) => {
      await gateway.admin('PUT', `backends/${model}/v1`, { url: v1.url });
      await gateway.admin('PUT', `backends/${model}/v2`, { url: candidate });
      await gateway.admin('PUT', `routes/${model}`, {
        weights: { v1: 100 },
        shadow: null,
        stickyKey: 'header:x-entity-id',
      });
      await gateway.admin('PUT', `leases/${model}`, {
        holder: lease,
        champion: 'v1',
        candidate: 'v2',
        ttlMs: 6 * 3_600_000,
      });
    };
    const route = (model: string, weights: Record<string, number>, shadow: boolean) =>
      gateway.admin('PUT', `routes/${model}`, {
        weights,
        shadow: shadow ? { version: 'v2', sampleRate: 1 } : null,
        stickyKey: 'header:x-entity-id',
        lease,
      });
    await setUp(SPLIT, v2.url);

    const nginxPort = await freePort();
    const nginx = async (mirror: { split: string | null; mirror: string }) => {
      const confDir = join(dir, `nginx-${mirror.split ?? 'none'}-${mirror.mirror}`);
      mkdirSync(confDir, { recursive: true });
      chmodSync(confDir, 0o755);
      const conf = join(confDir, 'nginx.conf');
      writeFileSync(
        conf,
        nginxConfig(confDir, nginxPort, { v1: v1.port, v2: v2.port, slow: slow.port }, mirror),
      );
      const child = spawnChild(NGINX, ['-c', conf, '-p', confDir, '-e', join(confDir, 'error.log')]);
      await started(child, `http://127.0.0.1:${nginxPort}/`, 'nginx');
      return child;
    };

    const load = new Load(dir);
    const directUrl = `${v1.url}/invocations`;
    const viaGateway = (model: string) => `${gatewayUrl}/models/${model}/invocations`;
    const viaNginx = (model: string) => `http://127.0.0.1:${nginxPort}/models/${model}/invocations`;
    let gatewaySent = 0;
    const onGateway = async (model: string, rate: number, seconds = SECONDS) => {
      const r = await load.attack(viaGateway(model), rate, seconds);
      gatewaySent += r.requests;
      return r;
    };
    const rates = QUICK ? [300] : [300, 1000];
    const cases: Record<string, Case & { codes: Record<string, number> }> = {};
    const warm = async (url: string) => void (await load.attack(url, 200, 1));

    // Warm-ups (not measured): connections, JIT.
    await warm(directUrl);
    await route(SPLIT, { v1: 95, v2: 5 }, false);
    gatewaySent += (await load.attack(viaGateway(SPLIT), 200, 1)).requests;

    for (const rate of rates) cases[`direct_${rate}`] = await load.attack(directUrl, rate, SECONDS);

    // The 5% split.
    for (const rate of rates) cases[`gateway_split_${rate}`] = await onGateway(SPLIT, rate);
    let proxy = await nginx({ split: null, mirror: 'v2' });
    await warm(viaNginx(SPLIT));
    for (const rate of rates)
      cases[`nginx_split_${rate}`] = await load.attack(viaNginx(SPLIT), rate, SECONDS);
    await stopProcess(proxy);

    // The split with 100% mirroring to the candidate.
    await route(SPLIT, { v1: 95, v2: 5 }, true);
    for (const rate of rates) cases[`gateway_split_mirror_${rate}`] = await onGateway(SPLIT, rate);
    proxy = await nginx({ split: 'v2', mirror: 'v2' });
    await warm(viaNginx(SPLIT));
    for (const rate of rates)
      cases[`nginx_split_mirror_${rate}`] = await load.attack(viaNginx(SPLIT), rate, SECONDS);
    await stopProcess(proxy);

    // 100% mirroring to a shadow answering at once, then to one answering in 100 ms.
    const top = rates[rates.length - 1]!;
    await setUp(MIRROR, v2.url);
    await route(MIRROR, { v1: 100 }, true);
    // A p99 moves by a millisecond or more between runs on a shared machine: the fast and the slow
    // shadow alternate for ROUNDS rounds, and the effect is the median of the rounds' differences.
    const slowEffect: number[] = [];
    for (let round = 0; round < ROUNDS; round++) {
      await gateway.admin('PUT', `backends/${MIRROR}/v2`, { url: v2.url });
      const fast = await onGateway(MIRROR, top);
      await gateway.admin('PUT', `backends/${MIRROR}/v2`, { url: slow.url });
      const slowCase = await onGateway(MIRROR, top);
      slowEffect.push(gap(slowCase, fast, 'p99_ms'));
      cases[`gateway_mirror_fast_${top}${round ? `_round${round + 1}` : ''}`] = fast;
      cases[`gateway_mirror_slow_${top}${round ? `_round${round + 1}` : ''}`] = slowCase;
    }
    proxy = await nginx({ split: null, mirror: 'v2' });
    await warm(viaNginx(MIRROR));
    cases[`nginx_mirror_fast_${top}`] = await load.attack(viaNginx(MIRROR), top, SECONDS);
    await stopProcess(proxy);
    proxy = await nginx({ split: null, mirror: 'slow' });
    await warm(viaNginx(MIRROR));
    cases[`nginx_mirror_slow_${top}`] = await load.attack(viaNginx(MIRROR), top, SECONDS);
    await stopProcess(proxy);

    // The highest rate the gateway holds (split + mirroring) with p99 under 10 ms and no error.
    const sweep: Array<{ rate: number; p99_ms: number; success: number }> = [];
    let held = 0;
    for (const rate of QUICK ? [500, 1000] : [1000, 1500, 2000, 2500, 3000, 4000, 5000]) {
      const r = await onGateway(SPLIT, rate, Math.min(SECONDS, 5));
      sweep.push({ rate, p99_ms: r.p99_ms, success: r.success });
      if (r.p99_ms >= 10 || r.success < 1) break;
      held = rate;
    }

    // Rollback decision -> last request the candidate's server received, under load.
    const decision = await decisionTrials(gateway, viaGateway(SPLIT), v2.url, lease, load);
    gatewaySent += decision.sent;

    // Every request is in the prediction log exactly once after a clean stop.
    const metrics = await (await fetch(`${gatewayUrl}/metrics`)).text();
    const counter = (name: string) =>
      [...metrics.matchAll(new RegExp(`^${name}(?:\\{[^}]*\\})? (\\d+(?:\\.\\d+)?)$`, 'gm'))].reduce(
        (sum, m) => sum + Number(m[1]),
        0,
      );
    await stopProcess(gatewayProcess);
    const db = new Database(join(stateDir, 'predictions.db'), { readonly: true });
    const rows = db.prepare('select role, count(*) as n from predictions group by role').all() as Array<{
      role: string;
      n: number;
    }>;
    const distinct = db
      .prepare("select count(distinct request_id) as n from predictions where role = 'primary'")
      .get() as {
      n: number;
    };
    db.close();
    const logged = Object.fromEntries(rows.map((r) => [r.role, r.n]));

    const pick = (c: Case) => ({
      p50_ms: c.p50_ms,
      p99_ms: c.p99_ms,
      max_ms: c.max_ms,
      success: c.success,
      requests: c.requests,
      rate_achieved: c.rate_achieved,
    });
    const at = (rate: number) => ({
      split_p50_gap_ms: gap(cases[`gateway_split_${rate}`]!, cases[`nginx_split_${rate}`]!, 'p50_ms'),
      split_p99_gap_ms: gap(cases[`gateway_split_${rate}`]!, cases[`nginx_split_${rate}`]!, 'p99_ms'),
      split_mirror_p50_gap_ms: gap(
        cases[`gateway_split_mirror_${rate}`]!,
        cases[`nginx_split_mirror_${rate}`]!,
        'p50_ms',
      ),
      split_mirror_p99_gap_ms: gap(
        cases[`gateway_split_mirror_${rate}`]!,
        cases[`nginx_split_mirror_${rate}`]!,
        'p99_ms',
      ),
    });
    const result = {
      command: `npm run bench:gateway --${QUICK ? ' --quick' : ''} --seconds ${SECONDS} --trials ${TRIALS}${PROCESSES === null ? '' : ` --processes ${PROCESSES}`}`,
      machine: { cores: cpus().length, node: process.version },
      gateway_processes: PROCESSES ?? `default (${Math.min(availableParallelism(), 8)})`,
      body_parse_us: parseCost(),
      seconds_per_case: SECONDS,
      cases: Object.fromEntries(Object.entries(cases).map(([k, c]) => [k, pick(c)])),
      gateway_vs_nginx: Object.fromEntries(rates.map((r) => [String(r), at(r)])),
      slow_shadow_p99_added_ms: {
        gateway_median_of_rounds: Number(quantile(slowEffect, 0.5).toFixed(3)),
        gateway_rounds: slowEffect,
        nginx: gap(cases[`nginx_mirror_slow_${top}`]!, cases[`nginx_mirror_fast_${top}`]!, 'p99_ms'),
      },
      sweep: { cases: sweep, highest_rate_p99_under_10ms: held },
      rollback_decision_to_last_candidate_request_ms: decision.summary,
      prediction_log: {
        requests_sent_to_gateway: gatewaySent,
        primary_rows: logged.primary ?? 0,
        distinct_primary_request_ids: distinct.n,
        shadow_rows: logged.shadow ?? 0,
        shadow_dropped: counter('promote_gateway_shadow_dropped_total'),
        log_rows_dropped: counter('promote_gateway_prediction_log_dropped_total'),
      },
    };
    process.stdout.write(`${JSON.stringify(result, null, 2)}\n`);
  } finally {
    for (const child of children.reverse()) if (child.exitCode === null) await stopProcess(child);
    if (!process.env.PROMOTE_BENCH_KEEP) rmSync(dir, { recursive: true, force: true });
  }
}

/** Microseconds one JSON.parse of a body takes (median of repetitions): the gateway's one parse. */
function parseCost(): Record<string, number> {
  const sized = (bytes: number) => {
    const row = JSON.parse(body(0)) as { dataframe_split: { columns: string[]; data: number[][] } };
    const rows = Math.max(1, Math.round(bytes / JSON.stringify(row.dataframe_split.data[0]).length));
    row.dataframe_split.data = Array.from({ length: rows }, () => row.dataframe_split.data[0]!);
    return JSON.stringify(row);
  };
  const time = (text: string) => {
    const reps = Math.max(20, Math.min(2000, Math.round(2_000_000 / text.length)));
    const samples: number[] = [];
    for (let i = 0; i < reps; i++) {
      const t = process.hrtime.bigint();
      JSON.parse(text);
      samples.push(Number(process.hrtime.bigint() - t) / 1000);
    }
    return Number(quantile(samples, 0.5).toFixed(1));
  };
  const small = body(0);
  return {
    [`${small.length}_bytes`]: time(small),
    '64_KiB': time(sized(64 << 10)),
    '1_MiB': time(sized(1 << 20)),
  };
}

function gap(a: Case, b: Case, key: 'p50_ms' | 'p99_ms'): number {
  return Number((a[key] - b[key]).toFixed(3));
}

/**
 * Trials of a rollback under load: traffic at 500/s through the gateway with the candidate at 50%;
 * at the decision the bench makes the calls a rollback makes (read the route, then all weight on
 * the champion with the shadow off); then it waits and asks the candidate's server when the last
 * request arrived. The figure is that arrival minus the decision instant (0 if none came after).
 */
async function decisionTrials(
  gateway: GatewayClient,
  url: string,
  candidateUrl: string,
  holder: string,
  load: Load,
): Promise<{ summary: Record<string, number>; sent: number }> {
  const perTrialMs = 400;
  const seconds = Math.ceil((TRIALS * (perTrialMs + 20)) / 1000) + 3;
  const background = load.attack(url, 500, seconds);
  const samples: number[] = [];
  let after = 0;
  const stickyKey = 'header:x-entity-id';
  await new Promise((r) => setTimeout(r, 500));
  for (let i = 0; i < TRIALS; i++) {
    // Each trial is a promotion: it takes the lease (its holder released it at the last rollback).
    await gateway.admin('PUT', `leases/${SPLIT}`, {
      holder,
      champion: 'v1',
      candidate: 'v2',
      ttlMs: 600_000,
    });
    await gateway.admin('PUT', `routes/${SPLIT}`, {
      weights: { v1: 50, v2: 50 },
      shadow: null,
      stickyKey,
      lease: holder,
    });
    await new Promise((r) => setTimeout(r, perTrialMs / 2));
    const decidedNs = process.hrtime.bigint();
    await gateway.admin('GET', `routes/${SPLIT}`);
    await gateway.admin('PUT', `routes/${SPLIT}`, {
      weights: { v1: 100 },
      shadow: null,
      stickyKey,
      lease: holder,
    });
    await new Promise((r) => setTimeout(r, perTrialMs / 2));
    const stats = (await (await fetch(`${candidateUrl}/stats`)).json()) as { lastArrivalNs: string };
    const delta = Number(BigInt(stats.lastArrivalNs) - decidedNs) / 1e6;
    if (delta > 0) after++;
    samples.push(Math.max(0, delta));
  }
  const r = await background;
  return {
    summary: {
      trials: TRIALS,
      p50: Number(quantile(samples, 0.5).toFixed(3)),
      p99: Number(quantile(samples, 0.99).toFixed(3)),
      max: Number(Math.max(...samples).toFixed(3)),
      trials_with_candidate_requests_after_decision: after,
      load_success: r.success,
    },
    sent: r.requests,
  };
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/gateway: ${err instanceof Error ? (err.stack ?? err.message) : String(err)}\n`);
  process.exit(1);
});
