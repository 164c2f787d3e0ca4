/**
 * Test fixtures: a worker with the in-process plane on its own task queue against the shared dev
 * server, seeded models, fast plans, and polling helpers. One definition, used by every test file.
 */
import { randomUUID } from 'node:crypto';
import { Client, Connection } from '@temporalio/client';
import { DefaultLogger, NativeConnection, Runtime, type Worker } from '@temporalio/worker';
import pino from 'pino';
import { Promotions } from '../../src/client/promotions';
import type { PlanInput } from '../../src/plan/schema';
import { parsePlan } from '../../src/plan/validate';
import type { Behaviour, InProcessPlane } from '../../src/providers/inprocess/plane';
import { inProcessStack, type InProcessStack } from '../../src/worker/composition';
import { createPromotionWorker } from '../../src/worker/worker';
import type { PromotionStatus } from '../../src/workflows/types';

// Keep the SDK quiet in tests: warnings and errors only.
let runtimeInstalled = false;
export function installQuietRuntime(): void {
  if (runtimeInstalled) return;
  runtimeInstalled = true;
  try {
    Runtime.install({ logger: new DefaultLogger('WARN') });
  } catch {
    // already installed by an earlier test file in this process
  }
}

export function testAddress(): string {
  const address = process.env.PROMOTE_TEST_ADDRESS;
  if (!address)
    throw new Error('PROMOTE_TEST_ADDRESS is not set: the jest global setup starts the dev server');
  return address;
}

export interface TestStack extends InProcessStack {
  client: Client;
  promotions: Promotions;
  taskQueue: string;
  worker: Worker;
  stop(): Promise<void>;
}

export async function startStack(
  opts: { trafficRate?: number; stateDir?: string | null; labelDelayMs?: number } = {},
): Promise<TestStack> {
  installQuietRuntime();
  const address = testAddress();
  const connection = await Connection.connect({ address });
  const native = await NativeConnection.connect({ address });
  const stack = inProcessStack({
    stateDir: opts.stateDir ?? null,
    logger: pino({ level: 'silent' }),
    traffic: { ratePerSec: opts.trafficRate ?? 1000, labelDelayMs: opts.labelDelayMs ?? 0 },
  });
  const taskQueue = `test-${randomUUID()}`;
  const worker = await createPromotionWorker({
    connection: native,
    namespace: 'default',
    taskQueue,
    catalog: stack.catalog,
    workflowBundle: { codePath: process.env.PROMOTE_TEST_BUNDLE! },
    shutdownGraceTime: '2s',
  });
  const running = worker.run();
  const client = new Client({ connection, namespace: 'default' });
  return {
    ...stack,
    client,
    promotions: new Promotions(client, taskQueue),
    taskQueue,
    worker,
    stop: async () => {
      stack.driver?.stop();
      if (worker.getState() === 'RUNNING') worker.shutdown();
      await running;
      await native.close();
      await connection.close();
    },
  };
}

let counter = 0;
/** A model name unique to this test run (promotion ids derive from model names). */
export function uniqueModel(prefix = 'model'): string {
  return `${prefix}-${process.pid}-${Date.now().toString(36)}-${counter++}`;
}

export const FEATURES = [
  { name: 'amount', type: 'double' },
  { name: 'merchant_risk', type: 'double' },
  { name: 'account_age_days', type: 'long' },
];

/** Registers v1 (champion, serving 100%) and the given candidates, with offline evaluations. */
export function seedModel(
  plane: InProcessPlane,
  model: string,
  candidates: Record<string, { auc?: number; behaviour?: Partial<Behaviour>; inputs?: typeof FEATURES }> = {
    v2: {},
  },
): void {
  plane.registerVersion({
    model,
    version: 'v1',
    inputs: FEATURES,
    offline: { auc: 0.85, log_loss: 0.4 },
    holdoutRows: 2000,
  });
  for (const [version, c] of Object.entries(candidates)) {
    plane.registerVersion({
      model,
      version,
      inputs: c.inputs ?? FEATURES,
      offline: { auc: c.auc ?? 0.87, log_loss: 0.38 },
      holdoutRows: 2000,
      behaviour: c.behaviour,
    });
  }
  void plane.setAlias(model, 'champion', 'v1');
  plane.initRoute(model, 'v1');
}

/** A plan whose waits are seconds long; `overrides` replace top-level sections. */
export function fastPlan(overrides: Partial<PlanInput> = {}) {
  return parsePlan({
    gates: [{ metric: 'auc', min: 0.7, maxRegressionVsChampion: 0.02 }, { check: 'feature_schema' }],
    canary: {
      steps: [
        { traffic: 10, bake: '2s' },
        { traffic: 50, bake: '2s', approval: { approvers: ['alice', 'bob'], required: 1, timeout: '2m' } },
        { traffic: 100, bake: '1s' },
      ],
    },
    guardrails: [{ metric: 'error_rate', max: 0.05, minSamples: 20 }],
    analysis: { interval: '1s', maxExtensions: 1 },
    policy: { thresholds: { block: 0.9, review: 0.6 } },
    ...overrides,
  });
}

/** Polls the promotion's status until `predicate` holds; fails with the last status on timeout. */
export async function waitForStatus(
  promotions: Promotions,
  id: string,
  predicate: (s: PromotionStatus) => boolean,
  timeoutMs = 60_000,
): Promise<PromotionStatus> {
  const deadline = Date.now() + timeoutMs;
  let last: PromotionStatus | undefined;
  for (;;) {
    try {
      last = await promotions.status(id);
      if (predicate(last)) return last;
    } catch {
      // not started yet
    }
    if (Date.now() > deadline) {
      throw new Error(
        `timed out waiting; last status: ${JSON.stringify(last && { phase: last.phase, outcome: last.outcome, traffic: last.trafficPercent, decisions: last.decisions.slice(-5) })}`,
      );
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

export const phaseIs = (phase: PromotionStatus['phase']) => (s: PromotionStatus) => s.phase === phase;

/** The plane's operations on `model` after operation number `afterSeq`, as `op:version` strings. */
export function opsAfter(plane: InProcessPlane, model: string, afterSeq: number): string[] {
  return plane.operations
    .filter((o) => o.model === model && o.seq > afterSeq)
    .map((o) =>
      o.op === 'setWeights'
        ? `setWeights:${JSON.stringify(o.detail.weights)}`
        : `${o.op}:${(o.detail.alias as string | undefined) ?? o.version ?? ''}`,
    );
}

/** The last operation number recorded so far. */
export function lastSeq(plane: InProcessPlane): number {
  return plane.operations.at(-1)?.seq ?? 0;
}

/** Asserts the plane is back where it was before the promotion: champion v1 serves everything. */
export function expectRestored(plane: InProcessPlane, model: string): void {
  const state = plane.snapshot();
  expect(state.routes[model]).toMatchObject({ weights: { v1: 100 }, shadow: null });
  expect(state.models[model]!.aliases).toEqual({ champion: 'v1' });
  expect(Object.keys(state.deployments[model] ?? {})).toEqual(['v1']);
  expect(state.policies[model]?.v2).toBeUndefined();
}
