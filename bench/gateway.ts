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
 *   npm run bench:gateway -- [--seconds 10] [--rounds 3] [--trials 100] [--processes N] [--quick]
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
/** Rounds of every case (medians reported). */
const ROUNDS = Math.round(arg('rounds', QUICK ? 1 : 3));
const VEGETA = process.env.PROMOTE_VEGETA ?? 'vegeta';
const NGINX = process.env.PROMOTE_NGINX ?? 'nginx';
const ROOT = resolve(__dirname, '..');
const ADMIN = 'bench-admin-token';
const ENTITIES = 1000;
/**
 * One model per variant, so no case reconfigures anything: v1 is the champion, v2 the candidate
 * (the 100 ms fixture for `mirror_slow`). nginx has one location per variant.
 */
const VARIANTS = {
  split: { model: 'bench-split', weights: { v1: 95, v2: 5 }, shadow: false, slow: false },
  split_mirror: { model: 'bench-split-mirror', weights: { v1: 95, v2: 5 }, shadow: true, slow: false },
  mirror_fast: { model: 'bench-mirror-fast', weights: { v1: 100 }, shadow: true, slow: false },
  mirror_slow: { model: 'bench-mirror-slow', weights: { v1: 100 }, shadow: true, slow: true },
} as const;
type Variant = keyof typeof VARIANTS;
const SPLIT = VARIANTS.split.model;

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

function nginxConfig(dir: string, port: number, up: { v1: number; v2: number; slow: number }): string {
  const upstream = (name: string, p: number) =>
    `  upstream ${name} { server 127.0.0.1:${p}; keepalive 128; }`;
  const proxy = 'proxy_http_version 1.1; proxy_set_header Connection "";';
  const location = (v: (typeof VARIANTS)[Variant]) => {
    const mirror = v.shadow ? `mirror /mirror-${v.slow ? 'slow' : 'v2'}; mirror_request_body on; ` : '';
    const to = 'v2' in v.weights ? '$version' : 'v1';
    return `    location = /models/${v.model}/invocations { ${mirror}proxy_pass http://${to}/invocations; ${proxy} }`;
  };
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
${Object.values(VARIANTS).map(location).join('\n')}
    location = /mirror-v2 { internal; proxy_pass http://v2/invocations; ${proxy} }
    location = /mirror-slow { internal; proxy_pass http://slow/invocations; ${proxy} }
  }
}
`;
}

/** Per-round results of one (path, variant, rate), summarised by medians. */
function summarise(runs: Case[]): Case & { rounds_p99_ms: number[] } {
  const med = (k: 'p50_ms' | 'p99_ms' | 'rate_achieved') =>
    Number(
      quantile(
        runs.map((r) => r[k]),
        0.5,
      ).toFixed(3),
    );
  return {
    p50_ms: med('p50_ms'),
    p99_ms: med('p99_ms'),
    max_ms: Math.max(...runs.map((r) => r.max_ms)),
    requests: runs.reduce((n, r) => n + r.requests, 0),
    success: Math.min(...runs.map((r) => r.success)),
    rate_achieved: med('rate_achieved'),
    rounds_p99_ms: runs.map((r) => r.p99_ms),
  };
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
    const stickyKey = 'header:x-entity-id';
    for (const v of Object.values(VARIANTS)) {
      await gateway.admin('PUT', `backends/${v.model}/v1`, { url: v1.url });
      await gateway.admin('PUT', `backends/${v.model}/v2`, { url: v.slow ? slow.url : v2.url });
      await gateway.admin('PUT', `routes/${v.model}`, { weights: { v1: 100 }, shadow: null, stickyKey });
      await gateway.admin('PUT', `leases/${v.model}`, {
        holder: lease,
        champion: 'v1',
        candidate: 'v2',
        ttlMs: 6 * 3_600_000,
      });
      await gateway.admin('PUT', `routes/${v.model}`, {
        weights: v.weights,
        shadow: v.shadow ? { version: 'v2', sampleRate: 1 } : null,
        stickyKey,
        lease,
      });
    }

    const nginxPort = await freePort();
    const confDir = join(dir, 'nginx');
    mkdirSync(confDir, { recursive: true });
    chmodSync(confDir, 0o755);
    const conf = join(confDir, 'nginx.conf');
    writeFileSync(conf, nginxConfig(confDir, nginxPort, { v1: v1.port, v2: v2.port, slow: slow.port }));
    const proxy = spawnChild(NGINX, ['-c', conf, '-p', confDir, '-e', join(confDir, 'error.log')]);
    await started(proxy, `http://127.0.0.1:${nginxPort}/`, 'nginx');

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
    const top = rates[rates.length - 1]!;
    const plan: Array<{ variant: Variant; rate: number }> = [
      ...rates.flatMap((rate) => [
        { variant: 'split' as const, rate },
        { variant: 'split_mirror' as const, rate },
      ]),
      { variant: 'mirror_fast', rate: top },
      { variant: 'mirror_slow', rate: top },
    ];

    // Warm-ups (not measured): connections, JIT, every worker of both proxies.
    await load.attack(directUrl, 200, 1);
    for (const v of Object.values(VARIANTS)) {
      gatewaySent += (await load.attack(viaGateway(v.model), 300, 1)).requests;
      await load.attack(viaNginx(v.model), 300, 1);
    }

    // A p99 moves by a millisecond or more between runs on a shared machine: every case runs in
    // ROUNDS rounds, the gateway and nginx back to back within a round, and the figures are the
    // medians over rounds (gaps: the median of each round's gap).
    const runs = new Map<string, Case[]>();
    const add = (key: string, c: Case) => runs.set(key, [...(runs.get(key) ?? []), c]);
    const gaps = new Map<string, number[]>();
    const addGap = (key: string, value: number) => gaps.set(key, [...(gaps.get(key) ?? []), value]);
    for (let round = 0; round < ROUNDS; round++) {
      for (const rate of rates) add(`direct_${rate}`, await load.attack(directUrl, rate, SECONDS));
      const byRound = new Map<string, Case>();
      for (const { variant, rate } of plan) {
        const model = VARIANTS[variant].model;
        const g = await onGateway(model, rate);
        const n = await load.attack(viaNginx(model), rate, SECONDS);
        add(`gateway_${variant}_${rate}`, g);
        add(`nginx_${variant}_${rate}`, n);
        addGap(`${variant}_${rate}_p50`, gap(g, n, 'p50_ms'));
        addGap(`${variant}_${rate}_p99`, gap(g, n, 'p99_ms'));
        byRound.set(`gateway_${variant}`, g);
        byRound.set(`nginx_${variant}`, n);
      }
      for (const path of ['gateway', 'nginx'])
        addGap(
          `slow_shadow_${path}`,
          gap(byRound.get(`${path}_mirror_slow`)!, byRound.get(`${path}_mirror_fast`)!, 'p99_ms'),
        );
    }
    const cases = Object.fromEntries([...runs].map(([k, v]) => [k, summarise(v)]));
    const median = (key: string) => Number(quantile(gaps.get(key) ?? [], 0.5).toFixed(3));
    await stopProcess(proxy);

    // The highest rate the gateway holds (split + mirroring) with p99 under 10 ms and no error.
    const sweep: Array<{ rate: number; p99_ms: number; success: number }> = [];
    let held = 0;
    for (const rate of QUICK ? [500, 1000] : [1000, 1500, 2000, 2500, 3000, 4000, 5000]) {
      const r = await onGateway(VARIANTS.split_mirror.model, rate, Math.min(SECONDS, 5));
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

    const result = {
      command: `npm run bench:gateway --${QUICK ? ' --quick' : ''} --seconds ${SECONDS} --rounds ${ROUNDS} --trials ${TRIALS}${PROCESSES === null ? '' : ` --processes ${PROCESSES}`}`,
      machine: { cores: cpus().length, node: process.version },
      gateway_processes: PROCESSES ?? `default (${Math.min(availableParallelism(), 8)})`,
      body_parse_us: parseCost(),
      seconds_per_case: SECONDS,
      rounds: ROUNDS,
      cases,
      gateway_minus_nginx_median_of_rounds_ms: Object.fromEntries(
        plan.map(({ variant, rate }) => [
          `${variant}_${rate}`,
          { p50: median(`${variant}_${rate}_p50`), p99: median(`${variant}_${rate}_p99`) },
        ]),
      ),
      slow_shadow_p99_added_ms: {
        gateway_median_of_rounds: median('slow_shadow_gateway'),
        gateway_rounds: gaps.get('slow_shadow_gateway'),
        nginx_median_of_rounds: median('slow_shadow_nginx'),
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
