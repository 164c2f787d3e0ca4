/**
 * One promotion of the trial: started through the CLI, faults injected while it runs, followed to
 * its end with bounded waits, recovered through the CLI when it was terminated, then checked.
 */
import { Promotions } from '../../src/client/promotions';
import { promotionId } from '../../src/workflows/search';
import type { Decision, PromotionResult } from '../../src/workflows/types';
import type { RecoveryReport } from '../../src/workflows/recovery';
import { checkConsistency, type CheckResult } from './checks';
import { describe, promote, within, type Described } from './control';
import { inject, type FaultContext, type FaultRecord, type PlannedFault } from './faults';
import type { Lock } from './lock';
import type { TrialStack } from './stack';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export interface PromotionSpec {
  n: number;
  model: string;
  candidate: string;
  /** Whether the candidate is one that must not end as champion (errors under load, wrong inputs). */
  bad: boolean;
  planFile: string;
  faults: PlannedFault[];
  /** A promotion that has not ended after this long is a failure of its own. */
  timeoutMs: number;
}

export interface RecoveryRecord {
  promotion: number;
  startRefused: boolean;
  startAnswer: string;
  exitCode: number;
  outcome: string | null;
  consistent: boolean | null;
  stepsChanged: string[];
  problems: string[];
  durationSec: number;
}

export interface PromotionRecord {
  n: number;
  candidate: string;
  champion: string | null;
  bad: boolean;
  /** succeeded, rolled_back, failed, aborted, rejected; terminated; or not_started / not_finished. */
  outcome: string;
  reason: string | null;
  durationSec: number;
  faults: FaultKind[];
  recovery: RecoveryRecord | null;
}

type FaultKind = FaultRecord['kind'];

export interface PromotionRun {
  record: PromotionRecord;
  /** Every fault injected (fired), with details. */
  fired: FaultRecord[];
  /** Planned faults whose moment came after the promotion ended (to carry over). */
  notFired: PlannedFault[];
  checks: (CheckResult & { after: string })[];
  /** Harness errors (a restart that failed, a call that hung). */
  errors: string[];
  /** How long the checks had to wait for the faults of this promotion to end, ms. */
  waitedForFaultsMs: number;
}

export async function runPromotion(
  stack: TrialStack,
  spec: PromotionSpec,
  workerLock: Lock,
  say: (line: string) => void,
): Promise<PromotionRun> {
  const { model } = spec;
  const checks: PromotionRun['checks'] = [];
  const errors: string[] = [];
  const label = `promotion ${spec.n} (${spec.candidate})`;
  const check = (c: CheckResult) => {
    checks.push({ ...c, after: label });
    if (!c.ok) say(`  CHECK FAILED after ${label}: ${c.check}: ${c.detail}`);
  };
  const champion = await stack.registry.getAlias(model, 'champion').catch(() => null);
  /** The end state after an outcome: a bad candidate stopped, and the plane consistent with it. */
  const checkEnd = async (
    outcome: string,
    badDetail: string,
    decisions: Decision[] | null,
    suffix: string,
  ) => {
    if (spec.bad) check({ check: 'bad candidate stopped', ok: outcome !== 'succeeded', detail: badDetail });
    const serving = outcome === 'succeeded' ? spec.candidate : champion;
    for (const c of await checkConsistency(stack, {
      model,
      serving: serving ?? '?',
      candidate: spec.candidate,
      outcomeTag: outcome,
      decisions,
    }))
      check({ ...c, check: `${c.check}${suffix}` });
  };
  const record: PromotionRecord = {
    n: spec.n,
    candidate: spec.candidate,
    champion,
    bad: spec.bad,
    outcome: 'not_started',
    reason: null,
    durationSec: 0,
    faults: [],
    recovery: null,
  };
  say(
    `promotion ${spec.n}: ${spec.candidate} over champion ${champion}${spec.bad ? ' (a bad candidate)' : ''}; faults planned: ${spec.faults.map((f) => f.kind).join(', ') || 'none'}`,
  );
  const started = await promote(stack, [
    'start',
    '--model',
    model,
    '--version',
    spec.candidate,
    '--plan',
    spec.planFile,
    '--as',
    'trials',
    '--json',
  ]);
  check({
    check: 'promote start',
    ok: started.code === 0,
    detail: started.code === 0 ? started.stdout.trim() : `exit ${started.code}: ${started.stderr.trim()}`,
  });
  if (started.code !== 0)
    return { record, fired: [], notFired: spec.faults, checks, errors, waitedForFaultsMs: 0 };

  const t0 = Date.now();
  const ended = new AbortController();
  const ctx: FaultContext = {
    stack,
    model,
    promotion: spec.n,
    startedAtMs: t0,
    ended: ended.signal,
    say,
    workerLock,
  };
  const tasks = spec.faults.map((f) =>
    inject(f, ctx).then(
      (r) => ({ planned: f, fired: r }),
      (err: unknown) => {
        errors.push(`${f.kind} in promotion ${spec.n}: ${(err as Error).message}`);
        return { planned: f, fired: null };
      },
    ),
  );

  let last: Described | null = null;
  const deadline = t0 + spec.timeoutMs;
  for (;;) {
    const d = await describe(stack, model);
    if (d) last = d;
    if (d && d.status !== 'RUNNING') break;
    if (Date.now() > deadline) break;
    await sleep(1000);
  }
  const finishedInTime = last !== null && last.status !== 'RUNNING';
  record.durationSec = Math.round((Date.now() - t0) / 1000);
  ended.abort();
  const endedAt = Date.now();
  const results = await Promise.all(tasks);
  const waitedForFaultsMs = Date.now() - endedAt;
  const fired = results.flatMap((r) => (r.fired ? [r.fired] : []));
  const notFired = results.filter((r) => r.fired === null).map((r) => r.planned);
  record.faults = fired.map((f) => f.kind);
  if (!stack.running('worker')) {
    errors.push(`the worker was not running after promotion ${spec.n}; started it`);
    await stack.startWithin('worker', 120_000).catch((err: unknown) => errors.push((err as Error).message));
  }
  const workers = stack.liveWorkers();
  if (workers.length !== 1)
    errors.push(`${workers.length} worker processes after promotion ${spec.n} (pids ${workers.join(' ')})`);

  if (!finishedInTime) {
    check({
      check: 'promotion finished in time',
      ok: false,
      detail: `still ${last?.phase ?? 'unknown'} at ${last?.traffic ?? '?'}% after ${Math.round(spec.timeoutMs / 1000)}s; aborting it`,
    });
    await promote(stack, [
      'abort',
      model,
      '--as',
      'trials',
      '--reason',
      'fault trial: did not finish in time',
    ]);
    const abortDeadline = Date.now() + 300_000;
    while (Date.now() < abortDeadline) {
      const d = await describe(stack, model);
      if (d && d.status !== 'RUNNING') break;
      await sleep(2000);
    }
  }

  const final = await describe(stack, model);
  const promotions = new Promotions(stack.client, stack.o.taskQueue);
  const decisionsOf = async (): Promise<Decision[] | null> =>
    within(60_000, 'the decision log', promotions.status(model))
      .then((s) => s.decisions)
      .catch((err: unknown) => {
        errors.push(`decision log of promotion ${spec.n}: ${(err as Error).message}`);
        return null;
      });

  if (final?.status === 'COMPLETED') {
    const result = await within(
      60_000,
      'the promotion result',
      stack.client.workflow.getHandle(promotionId(model)).result() as Promise<PromotionResult>,
    ).catch((err: unknown) => {
      errors.push(`result of promotion ${spec.n}: ${(err as Error).message}`);
      return null;
    });
    record.outcome = result?.outcome ?? 'unknown';
    record.reason = result?.reason ?? null;
    say(
      `promotion ${spec.n}: ${record.outcome} in ${record.durationSec}s${record.reason ? ` (${record.reason})` : ''}`,
    );
    await checkEnd(
      record.outcome,
      `${spec.candidate} ended ${record.outcome}`,
      result?.status.decisions ?? null,
      '',
    );
  } else {
    record.outcome = final?.status === 'TERMINATED' ? 'terminated' : `workflow ${final?.status ?? 'unknown'}`;
    if (final?.status !== 'TERMINATED')
      check({
        check: 'promotion workflow completed',
        ok: false,
        detail: `the workflow ended ${final?.status ?? 'unknown'}`,
      });
    say(`promotion ${spec.n}: ${record.outcome} after ${record.durationSec}s; recovering through the CLI`);
    const decisions = await decisionsOf();
    const recovery = await recoverThroughCli(stack, spec, champion, check);
    record.recovery = recovery;
    if (recovery.outcome !== null)
      await checkEnd(
        recovery.outcome,
        `${spec.candidate} was terminated; recovery ${recovery.outcome}`,
        decisions,
        ' (after recovery)',
      );
  }
  return { record, fired, notFired, checks, errors, waitedForFaultsMs };
}

/**
 * After a terminate: `promote start` must refuse (exit 3, naming `promote recover`), then
 * `promote recover` repairs the model and reads back a consistent state.
 */
async function recoverThroughCli(
  stack: TrialStack,
  spec: PromotionSpec,
  champion: string | null,
  check: (c: CheckResult) => void,
): Promise<RecoveryRecord> {
  const t0 = Date.now();
  const next = champion === '1' ? '2' : '1';
  const refused = await promote(stack, [
    'start',
    '--model',
    spec.model,
    '--version',
    next,
    '--plan',
    spec.planFile,
    '--as',
    'trials',
  ]);
  const startRefused = refused.code === 3 && refused.stderr.includes('promote recover');
  check({
    check: 'start refused before recovery',
    ok: startRefused,
    detail: `exit ${refused.code}: ${(refused.stderr || refused.stdout).trim().slice(0, 400)}`,
  });
  if (refused.code === 0) {
    // It started on top of what the terminated run left: stop it before recovering.
    await promote(stack, ['abort', spec.model, '--as', 'trials', '--reason', 'started before recovery']);
    for (let i = 0; i < 150; i++) {
      const d = await describe(stack, spec.model);
      if (d && d.status !== 'RUNNING') break;
      await sleep(2000);
    }
  }
  const ran = await promote(
    stack,
    [
      'recover',
      spec.model,
      '--reason',
      `fault trial: promotion ${spec.n} was terminated`,
      '--as',
      'trials-oncall',
      '--json',
      '--timeout',
      '300',
    ],
    330_000,
  );
  let report: RecoveryReport | null = null;
  try {
    report = JSON.parse(ran.stdout) as RecoveryReport;
  } catch {
    report = null;
  }
  const stepNames = report?.steps.map((s) => s.step) ?? [];
  const twice = stepNames.filter((s, i) => stepNames.indexOf(s) !== i);
  check({
    check: 'promote recover',
    ok: ran.code === 0 && report?.consistent === true && twice.length === 0,
    detail:
      ran.code === 0 && report
        ? `${report.outcome}, consistent ${report.consistent}; ${
            report.steps
              .filter((s) => s.changed)
              .map((s) => s.step)
              .join('; ') || 'nothing changed'
          }${twice.length ? `; steps twice: ${twice.join(', ')}` : ''}`
        : `exit ${ran.code}: ${ran.stderr.trim().slice(0, 400)}`,
  });
  return {
    promotion: spec.n,
    startRefused,
    startAnswer: (refused.stderr || refused.stdout).trim().slice(0, 300),
    exitCode: ran.code,
    outcome: report?.outcome ?? null,
    consistent: report?.consistent ?? null,
    stepsChanged: report?.steps.filter((s) => s.changed).map((s) => s.step) ?? [],
    problems: report?.problems ?? [],
    durationSec: Math.round((Date.now() - t0) / 1000),
  };
}
