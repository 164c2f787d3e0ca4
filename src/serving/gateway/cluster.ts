/**
 * The multi-process gateway (docs/data-plane.md): one primary process and N workers sharing the
 * listening port (node:cluster).
 *
 * - The primary owns what must exist once: the state file, the lease clock, the admin API and the
 *   prediction log. It serves no requests itself.
 * - Workers serve inference from a replica of the state. Every change (an admin call, a lease that
 *   expires) is sent to every worker, and an admin call is answered only once every worker has
 *   acknowledged it, so what an admin call returns is what every worker routes by. A worker that
 *   does not acknowledge within `ackTimeoutMs` is killed and replaced (a new worker gets the state
 *   before it listens): no worker keeps routing by a state the lease has ended.
 * - Workers send their prediction-log rows to the primary in batches (every 10 ms, or 500 rows),
 *   and forward admin calls, label batches and metrics scrapes; /metrics sums every process.
 * - A worker that exits is replaced; on SIGTERM the primary stops the workers (each sends its last
 *   rows), then writes what is buffered and closes the log.
 */
import cluster, { type Worker } from 'node:cluster';
import { AggregatorRegistry, type Registry } from 'prom-client';
import type { Logger } from '../../common/logger';
import type { AdminCall } from './admin';
import type { GatewayConfig } from './config';
import { installLastResort } from './last-resort';
import { openPredictionLog } from './prediction-log';
import {
  PredictionLogUnavailable,
  type Prediction,
  type PredictionLog,
  type PredictionLogStats,
} from './prediction-log';
import { Gateway, type Answer, type PrimaryLink } from './server';

/** A registry's metrics as JSON (what the aggregation sums). */
type metric = Awaited<ReturnType<Registry['getMetricsAsJSON']>>[number];

/** Messages from a worker to the primary. */
type Up =
  | { t: 'promote:ready' }
  | { t: 'promote:ack'; version: number }
  | { t: 'promote:rows'; rows: Prediction[] }
  | { t: 'promote:features'; model: string; columns: Array<[string, string]> }
  | { t: 'promote:admin'; id: number; call: AdminCall }
  | { t: 'promote:labels'; id: number; model: string; token: string | null; body: string }
  | { t: 'promote:metrics'; id: number }
  | { t: 'promote:metrics-json'; id: number; json: metric[] }
  | { t: 'promote:bye' }
  | { t: 'promote:fatal'; error: string };

/** Messages from the primary to a worker. */
type Down =
  | { t: 'promote:state'; version: number; state: unknown }
  | { t: 'promote:reply'; id: number; answer: Answer }
  | { t: 'promote:collect'; id: number }
  | { t: 'promote:stop' };

const isMessage = (m: unknown): m is { t: string } =>
  m !== null && typeof m === 'object' && typeof (m as { t?: unknown }).t === 'string';

export interface ClusterOptions {
  processes: number;
  /** How long a worker has to acknowledge a state change before it is replaced, ms. Default 2000. */
  ackTimeoutMs?: number;
}

const send = (worker: Worker, message: Down) => {
  if (worker.isConnected()) worker.send(message);
};

/**
 * The gateway of this process from its settings: over its own prediction log, or, with `worker`,
 * over a worker's forwarding log. Installs the last-resort handlers, counting on this gateway.
 */
export function openGateway(
  config: GatewayConfig,
  logger: Logger,
  worker?: { log: PredictionLog; primary: PrimaryLink; id?: number },
): { gateway: Gateway; log: PredictionLog } {
  const log =
    worker?.log ??
    openPredictionLog(config.predictionLog, {
      retentionMs: config.retentionMs,
      onError: (err, what) => logger.warn({ err }, `prediction log: ${what} failed (retried)`),
    });
  const gateway = new Gateway({
    stateDir: config.stateDir,
    log,
    adminToken: config.adminToken,
    ingestToken: config.ingestToken,
    logger,
    ...(worker ? { primary: worker.primary, worker: worker.id } : {}),
  });
  installLastResort(process, logger, (kind) => gateway.countUncaught(kind));
  return { gateway, log };
}

/** Runs the primary: forks the workers and answers them until SIGTERM/SIGINT. */
export function runPrimary(config: GatewayConfig, logger: Logger, opts: ClusterOptions): void {
  const { gateway, log } = openGateway(config, logger);
  const ackTimeoutMs = opts.ackTimeoutMs ?? 2000;
  /** Workers that have the state and listen, with the state version each acknowledged. */
  const acked = new Map<number, number>();
  const waiting = new Set<{ version: number; resolve: () => void }>();
  const collecting = new Map<number, { left: Set<number>; json: metric[][]; resolve: () => void }>();
  let nextId = 1;
  let stopping = false;
  let restarts = 0;

  const settleWaits = () => {
    for (const w of waiting) {
      if ([...acked.values()].every((v) => v >= w.version)) {
        waiting.delete(w);
        w.resolve();
      }
    }
  };
  /** Sends the current state to every worker (called after every change). */
  const broadcast = (): void => {
    const version = gateway.stateVersion;
    const state = gateway.snapshot();
    for (const id of acked.keys()) {
      const worker = cluster.workers?.[id];
      if (worker) send(worker, { t: 'promote:state', version, state });
    }
  };
  /** Resolves when every worker has acknowledged `version`; stragglers are killed and replaced. */
  const everyWorkerHas = (version: number): Promise<void> =>
    new Promise<void>((resolve) => {
      const w = { version, resolve };
      waiting.add(w);
      settleWaits();
      setTimeout(() => {
        if (!waiting.has(w)) return;
        for (const [id, v] of acked)
          if (v < version) {
            logger.error(
              { worker: id, version },
              'a gateway worker did not take a state change in time: replacing it',
            );
            acked.delete(id);
            cluster.workers?.[id]?.process.kill('SIGKILL');
          }
        waiting.delete(w);
        resolve();
      }, ackTimeoutMs).unref();
    });
  // Every change, a lease expiry included, is one every worker must take within ackTimeoutMs.
  gateway.onStateChange(() => {
    broadcast();
    void everyWorkerHas(gateway.stateVersion);
  });

  const metricsFor = async (): Promise<Answer> => {
    const id = nextId++;
    const ids = [...acked.keys()];
    const parts = await new Promise<metric[][]>((resolve) => {
      const entry = { left: new Set(ids), json: [] as metric[][], resolve: () => resolve(entry.json) };
      collecting.set(id, entry);
      for (const w of ids) {
        const worker = cluster.workers?.[w];
        if (worker) send(worker, { t: 'promote:collect', id });
        else entry.left.delete(w);
      }
      if (entry.left.size === 0) resolve(entry.json);
      setTimeout(() => resolve(entry.json), 2000).unref();
    });
    collecting.delete(id);
    const own = await gateway.metrics.getMetricsAsJSON();
    const replaced = {
      name: 'promote_gateway_worker_restarts_total',
      help: 'Gateway worker processes that exited and were replaced',
      type: 'counter',
      values: [{ value: restarts, labels: {} }],
      aggregator: 'sum',
    } as unknown as metric;
    const registry = AggregatorRegistry.aggregate([own, [replaced], ...parts]);
    return {
      status: 200,
      headers: { 'content-type': registry.contentType },
      payload: await registry.metrics(),
    };
  };

  const onMessage = (worker: Worker, message: unknown) => {
    if (!isMessage(message) || !message.t.startsWith('promote:')) return;
    const m = message as Up;
    const reply = (id: number, answer: Answer) => send(worker, { t: 'promote:reply', id, answer });
    switch (m.t) {
      case 'promote:ready':
        if (stopping) return send(worker, { t: 'promote:stop' });
        acked.set(worker.id, -1);
        send(worker, { t: 'promote:state', version: gateway.stateVersion, state: gateway.snapshot() });
        return;
      case 'promote:ack':
        if (acked.has(worker.id)) acked.set(worker.id, m.version);
        settleWaits();
        return;
      case 'promote:rows':
        if (Array.isArray(m.rows)) log.record(m.rows);
        return;
      case 'promote:features':
        gateway.noteColumns(m.model, m.columns);
        return;
      case 'promote:admin':
        void gateway.answerAdmin(m.call).then(async (answer) => {
          // Answered once every worker routes by the state answered (a change, or for a read the
          // state read): what an admin call returns is what every worker routes by.
          await everyWorkerHas(gateway.stateVersion);
          reply(m.id, answer);
        });
        return;
      case 'promote:fatal':
        // A worker that cannot start (e.g. the port is taken) would fail the same way again:
        // the gateway exits, as a single process does, rather than restart it forever.
        logger.error(
          { worker: worker.id, error: String(m.error).slice(0, 500) },
          'a gateway worker cannot start',
        );
        stop(1);
        return;
      case 'promote:labels':
        void gateway.answerLabels(m.model, m.token, m.body).then((answer) => reply(m.id, answer));
        return;
      case 'promote:metrics':
        void metricsFor().then((answer) => reply(m.id, answer));
        return;
      case 'promote:metrics-json': {
        const entry = collecting.get(m.id);
        if (!entry) return;
        entry.json.push(m.json);
        entry.left.delete(worker.id);
        if (entry.left.size === 0) entry.resolve();
        return;
      }
      case 'promote:bye':
        acked.delete(worker.id);
        settleWaits();
        return;
    }
  };

  cluster.setupPrimary({ silent: false });
  cluster.on('message', onMessage);
  cluster.on('exit', (worker, code, signal) => {
    acked.delete(worker.id);
    settleWaits();
    for (const entry of collecting.values()) {
      entry.left.delete(worker.id);
      if (entry.left.size === 0) entry.resolve();
    }
    if (stopping) return;
    restarts++;
    logger.error({ worker: worker.id, code, signal }, 'a gateway worker exited: starting another');
    // A worker that fails at once is not restarted in a tight loop. (Not unref'd: with every worker
    // gone this timer is what keeps the primary alive to start the next.)
    setTimeout(() => !stopping && cluster.fork(), 250);
  });
  gateway.startLeases();
  for (let i = 0; i < opts.processes; i++) cluster.fork();
  logger.info({ processes: opts.processes, port: config.port }, 'gateway primary started its workers');

  function stop(code = 0): void {
    if (stopping) return;
    stopping = true;
    logger.info('gateway stopping');
    const workers = Object.values(cluster.workers ?? {}).filter((w): w is Worker => w !== undefined);
    const exited = Promise.all(
      workers.map(
        (w) =>
          new Promise<void>((resolve) => {
            if (w.isDead()) return resolve();
            w.once('exit', () => resolve());
            send(w, { t: 'promote:stop' });
            setTimeout(() => (w.isDead() ? undefined : w.process.kill('SIGKILL')), 10_000).unref();
          }),
      ),
    );
    void exited
      .then(() => gateway.close(0))
      .then(() => log.close())
      .catch((err: unknown) => logger.error({ err }, 'gateway did not stop cleanly'))
      .finally(() => process.exit(code));
  }
  process.once('SIGTERM', () => stop());
  process.once('SIGINT', () => stop());
}

/**
 * The prediction log as a worker sees it: rows are batched to the primary (every 10 ms or 500
 * rows); a backlog beyond `maxBuffered` rows (the primary stopped reading) is dropped and counted.
 * Reads are answered by the primary (the worker forwards admin calls), never here.
 */
export class ForwardingLog implements PredictionLog {
  private rows: Prediction[] = [];
  private dropped = 0;
  /** Rows handed to the IPC channel and not yet written to it (its backlog). */
  private sending = 0;
  private timer: NodeJS.Timeout | null = null;

  /** `post` sends rows and calls `done` once they are written to the channel (or failed). */
  constructor(
    private readonly post: (rows: Prediction[], done: () => void) => void,
    private readonly maxBuffered = 50_000,
  ) {}

  record(rows: Prediction[]): void {
    for (const row of rows) {
      // Waiting here or in the channel's backlog: bounded together, drops counted.
      if (this.rows.length + this.sending >= this.maxBuffered) this.dropped++;
      else this.rows.push(row);
    }
    if (this.rows.length >= 500) this.send();
    else this.timer ??= setTimeout(() => this.send(), 10);
  }

  private send(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = null;
    if (this.rows.length === 0) return;
    const rows = this.rows;
    this.rows = [];
    this.sending += rows.length;
    this.post(rows, () => (this.sending -= rows.length));
  }

  flush(): Promise<void> {
    this.send();
    return Promise.resolve();
  }

  close(): Promise<void> {
    return this.flush();
  }

  stats(): PredictionLogStats {
    return { buffered: this.rows.length + this.sending, dropped: this.dropped, written: 0, pruned: 0 };
  }

  private elsewhere(): Promise<never> {
    return Promise.reject(
      new PredictionLogUnavailable('a gateway worker reads the prediction log through its primary'),
    );
  }
  ingestLabels = () => this.elsewhere();
  counts = () => this.elsewhere();
  sliceValues = () => this.elsewhere();
  window = () => this.elsewhere();
  pairs = () => this.elsewhere();
  labelled = () => this.elsewhere();
  pairsJson = () => this.elsewhere();
  labelledJson = () => this.elsewhere();
  prune = () => this.elsewhere();
}

/** Runs a worker: takes the state from the primary, then listens on the shared port. */
export function runWorker(config: GatewayConfig, logger: Logger): void {
  const up = (message: Up) => {
    if (process.connected) process.send?.(message);
  };
  const pending = new Map<number, (answer: Answer) => void>();
  let nextId = 1;
  const ask = (make: (id: number) => Up) =>
    new Promise<Answer>((resolve) => {
      const id = nextId++;
      pending.set(id, resolve);
      up(make(id));
    });
  const link: PrimaryLink = {
    admin: (call) => ask((id) => ({ t: 'promote:admin', id, call })),
    labels: (model, token, body) => ask((id) => ({ t: 'promote:labels', id, model, token, body })),
    metrics: () => ask((id) => ({ t: 'promote:metrics', id })),
    features: (model, columns) => up({ t: 'promote:features', model, columns }),
  };
  const log = new ForwardingLog((rows, done) => {
    // Without the primary the rows have nowhere to go; the worker exits on disconnect.
    if (!process.connected || !process.send) return done();
    process.send({ t: 'promote:rows', rows } satisfies Up, (err: Error | null) => {
      if (err) logger.warn({ err, rows: rows.length }, 'prediction-log rows not sent to the primary');
      done();
    });
  });
  const { gateway } = openGateway(config, logger, { log, primary: link, id: cluster.worker?.id });
  let listening = false;
  let stopping = false;
  const stop = (code: number) => {
    if (stopping) return;
    stopping = true;
    void gateway
      .close()
      .then(() => log.flush())
      .catch((err: unknown) => logger.error({ err }, 'gateway worker did not stop cleanly'))
      .finally(() => {
        // The last rows are sent before 'bye': the primary has them when it reads 'bye'.
        if (process.connected) process.send?.({ t: 'promote:bye' }, () => process.exit(code));
        else process.exit(code);
      });
  };
  process.on('message', (message: unknown) => {
    if (!isMessage(message)) return;
    const m = message as Down;
    switch (m.t) {
      case 'promote:state':
        gateway.applyState(m.state);
        up({ t: 'promote:ack', version: m.version });
        if (!listening) {
          listening = true;
          gateway.listen(config.port, config.host).catch((err: unknown) => {
            logger.error({ err }, 'gateway worker could not listen');
            const error = err instanceof Error ? err.message : String(err);
            if (process.connected) process.send?.({ t: 'promote:fatal', error }, () => process.exit(1));
            else process.exit(1);
          });
        }
        return;
      case 'promote:reply':
        pending.get(m.id)?.(m.answer);
        pending.delete(m.id);
        return;
      case 'promote:collect':
        void gateway.metrics
          .getMetricsAsJSON()
          .then((json) => up({ t: 'promote:metrics-json', id: m.id, json }));
        return;
      case 'promote:stop':
        stop(0);
        return;
    }
  });
  // The primary is gone: nothing routes this worker's state any more.
  process.on('disconnect', () => process.exit(0));
  // Signals go to the primary, which stops the workers in order.
  process.on('SIGTERM', () => undefined);
  process.on('SIGINT', () => undefined);
  up({ t: 'promote:ready' });
}
