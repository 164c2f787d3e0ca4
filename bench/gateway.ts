/**
 * Gateway overhead benchmark: latency added by the gateway over calling a model server directly,
 * at a fixed request rate (open loop), with a 5% canary, mirroring off and 100% mirroring on.
 * Real MLflow model servers; the gateway runs as its own process. Prints JSON with the command.
 *
 *   npx tsx bench/gateway.ts [--rate 50] [--seconds 20]
 * (needs PROMOTE_PYTHON_ENV; `bin/promote demo` or `npm test` creates the environment)
 */
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import pino from 'pino';
import { quantile } from '../src/analysis/stats';
import { freePort } from '../src/common/net';
import { pythonEnv, startMlflowServer, trainModels } from '../src/dev/mlflow';
import { stopProcess } from '../src/dev/temporal';
import { Datasets } from '../src/providers/local/datasets';
import { GatewayClient } from '../src/providers/local/gateway-client';
import { ModelServerSupervisor } from '../src/serving/supervisor';

const arg = (name: string, fallback: number) => {
  const i = process.argv.indexOf(`--${name}`);
  return i > 0 ? Number(process.argv[i + 1]) : fallback;
};
const RATE = arg('rate', 50);
const SECONDS = arg('seconds', 20);
const MODEL = 'bench-model';
const TOKEN = 'bench-token';

/** Sends `rate` requests per second for `seconds`, each independent of the others' completion. */
async function openLoop(
  send: (i: number) => Promise<boolean>,
): Promise<{ latencies: number[]; errors: number }> {
  const latencies: number[] = [];
  let errors = 0;
  const total = RATE * SECONDS;
  const start = performance.now();
  const pending: Promise<void>[] = [];
  for (let i = 0; i < total; i++) {
    const due = start + (i * 1000) / RATE;
    const wait = due - performance.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
    pending.push(
      (async () => {
        const t = performance.now();
        const ok = await send(i).catch(() => false);
        if (ok) latencies.push(performance.now() - t);
        else errors++;
      })(),
    );
  }
  await Promise.all(pending);
  return { latencies, errors };
}

const summary = (r: { latencies: number[]; errors: number }) => ({
  requests: r.latencies.length + r.errors,
  errors: r.errors,
  p50_ms: Number(quantile(r.latencies, 0.5).toFixed(2)),
  p99_ms: Number(quantile(r.latencies, 0.99).toFixed(2)),
});

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'promote-bench-'));
  const logger = pino({ level: 'silent' });
  const mlflow = await startMlflowServer({ dataDir: join(dir, 'mlflow'), port: await freePort() });
  const supervisor = new ModelServerSupervisor({
    stateDir: join(dir, 'servers'),
    trackingUri: mlflow.url,
    pythonEnv: pythonEnv(),
    logger,
    monitorMs: 0,
  });
  const gatewayPort = await freePort();
  const gatewayProcess = spawn(
    process.execPath,
    ['--import', 'tsx', join(__dirname, '../src/serving/gateway/main.ts')],
    {
      env: {
        ...process.env,
        PROMOTE_GATEWAY_PORT: String(gatewayPort),
        PROMOTE_GATEWAY_STATE_DIR: join(dir, 'gateway'),
        PROMOTE_GATEWAY_TOKEN: TOKEN,
        PROMOTE_INGEST_TOKEN: `${TOKEN}-ingest`,
        LOG_LEVEL: 'warn',
      },
      stdio: ['ignore', 'ignore', 'inherit'],
    },
  );
  try {
    await trainModels({ trackingUri: mlflow.url, model: MODEL, out: join(dir, 'datasets', MODEL) });
    const champion = await supervisor.deploy(MODEL, '1');
    const candidate = await supervisor.deploy(MODEL, '2');
    const gatewayUrl = `http://127.0.0.1:${gatewayPort}`;
    for (let i = 0; i < 100; i++) {
      if (
        await fetch(`${gatewayUrl}/health`).then(
          (r) => r.ok,
          () => false,
        )
      )
        break;
      await new Promise((r) => setTimeout(r, 100));
    }
    const gateway = new GatewayClient(gatewayUrl, TOKEN);
    await gateway.admin('PUT', `backends/${MODEL}/1`, { url: supervisor.endpoint(champion) });
    await gateway.admin('PUT', `backends/${MODEL}/2`, { url: supervisor.endpoint(candidate) });

    const holdout = new Datasets(join(dir, 'datasets')).holdout(MODEL);
    const features = holdout.columns.filter((c) => c !== 'entity_id' && c !== 'label');
    const bodies = holdout.rows.map((row) =>
      JSON.stringify({ dataframe_split: { columns: features, data: [features.map((f) => Number(row[f]))] } }),
    );
    const post = (url: string, i: number) =>
      fetch(url, {
        method: 'POST',
        headers: { 'content-type': 'application/json', 'x-entity-id': `e${i % 997}` },
        body: bodies[i % bodies.length],
      }).then(async (r) => {
        await r.arrayBuffer();
        return r.ok;
      });

    // Warm-up of both paths, then the measured runs.
    await Promise.all(
      Array.from({ length: 50 }, (_, i) => post(`${supervisor.endpoint(champion)}/invocations`, i)),
    );
    const direct = summary(await openLoop((i) => post(`${supervisor.endpoint(champion)}/invocations`, i)));
    // A split needs the traffic lease (docs/fail-safe.md); an hour outlasts the benchmark.
    const lease = 'bench/gateway';
    await gateway.admin('PUT', `leases/${MODEL}`, {
      holder: lease,
      champion: '1',
      candidate: '2',
      ttlMs: 3_600_000,
    });
    await gateway.admin('PUT', `routes/${MODEL}`, { weights: { '1': 95, '2': 5 }, shadow: null, lease });
    const canary = summary(await openLoop((i) => post(`${gatewayUrl}/models/${MODEL}/invocations`, i)));
    await gateway.admin('PUT', `routes/${MODEL}`, {
      weights: { '1': 95, '2': 5 },
      shadow: { version: '2', sampleRate: 1 },
      lease,
    });
    const mirrored = summary(await openLoop((i) => post(`${gatewayUrl}/models/${MODEL}/invocations`, i)));
    const metrics = await (await fetch(`${gatewayUrl}/metrics`)).text();
    const drops = /promote_gateway_shadow_dropped_total\{[^}]*\} (\d+)/.exec(metrics)?.[1] ?? '0';

    const added = (s: typeof canary) => ({
      p50_ms: Number((s.p50_ms - direct.p50_ms).toFixed(2)),
      p99_ms: Number((s.p99_ms - direct.p99_ms).toFixed(2)),
    });
    process.stdout.write(
      `${JSON.stringify(
        {
          command: `npx tsx bench/gateway.ts --rate ${RATE} --seconds ${SECONDS}`,
          machine: { cores: (await import('node:os')).cpus().length, node: process.version },
          rate_per_s: RATE,
          seconds: SECONDS,
          direct,
          gateway_canary_5pct: canary,
          gateway_canary_5pct_mirror_100pct: { ...mirrored, shadow_dropped: Number(drops) },
          added_by_gateway: { canary_5pct: added(canary), canary_5pct_mirror_100pct: added(mirrored) },
        },
        null,
        2,
      )}\n`,
    );
  } finally {
    await supervisor.stopAll();
    await stopProcess(gatewayProcess);
    await mlflow.stop();
  }
}

main().catch((err: unknown) => {
  process.stderr.write(`bench/gateway: ${err instanceof Error ? err.stack : String(err)}\n`);
  process.exit(1);
});
