/**
 * The recovery workflow behind `promote recover`: for a model whose last promotion no longer runs
 * (terminated, failed, timed out) or was stopped by force, it restores traffic, aliases, policy
 * and serving from what that promotion recorded, tags the version, and reports every step with
 * what it found and what it left. Each step is idempotent: running recovery twice changes nothing
 * the second time. It runs on the promotion worker (which owns the providers); while no worker
 * runs it waits, durably, and the gateway's lease already keeps traffic on the champion.
 */
import { proxyActivities, upsertMemo } from '@temporalio/workflow';
import type { Activities } from '../activities';
import { nowMs } from './clock';
import { ACTIVITY_HEARTBEAT_TIMEOUT } from './options';
import { planRecovery, type RecoveryRecord, type RecoveryStep } from './recovery-record';

const acts = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  heartbeatTimeout: ACTIVITY_HEARTBEAT_TIMEOUT,
  scheduleToCloseTimeout: '10 minutes',
  retry: { initialInterval: '1s', backoffCoefficient: 2, maximumInterval: '30s' },
});

export interface RecoveryInput {
  model: string;
  /** The promotion being recovered: its workflow id and the run that left things behind. */
  promotionId: string;
  promotionRunId: string;
  /** How that run ended (TERMINATED, FAILED, ...), for the report. */
  promotionStatus: string;
  record: RecoveryRecord;
  by: string;
  reason: string;
}

export interface RecoveryStepReport {
  step: string;
  before: string;
  after: string;
  changed: boolean;
}

export interface RecoveryReport {
  model: string;
  promotionId: string;
  promotionRunId: string;
  outcome: 'recovered' | 'succeeded';
  steps: RecoveryStepReport[];
  /** Read back after the steps: all traffic on the expected version and the champion alias on it. */
  consistent: boolean;
  problems: string[];
}

const show = (weights: Record<string, number> | undefined, shadow?: { version: string } | null) =>
  weights
    ? `${Object.entries(weights)
        .map(([v, w]) => `${v}:${w}%`)
        .join(' ')}${shadow ? ` shadow ${shadow.version}` : ''}`
    : 'no route';

export async function recoverWorkflow(input: RecoveryInput): Promise<RecoveryReport> {
  upsertMemo({ promotionRunId: input.promotionRunId, model: input.model });
  const { model, record } = input;
  const refs = record.refs;
  const plan = planRecovery(record, {
    by: input.by,
    reason: input.reason,
    atIso: new Date(nowMs()).toISOString(),
    promotionId: input.promotionId,
  });
  const reports: RecoveryStepReport[] = [];
  for (const step of plan.steps) reports.push(await run(step));

  // Read back what matters at 3 a.m.: where traffic goes, and what the registry calls champion.
  const problems: string[] = [];
  if (plan.serving !== null) {
    const { route } = await acts.readRoute({ model, refs });
    if (!route || route.weights[plan.serving] !== 100 || route.shadow)
      problems.push(`traffic is ${show(route?.weights, route?.shadow)}, not 100% on ${plan.serving}`);
    const champion = await acts.getAlias({ model, alias: record.championAlias, refs });
    if (champion !== plan.serving)
      problems.push(`the ${record.championAlias} alias is ${champion ?? 'unset'}, not ${plan.serving}`);
  }
  return {
    model,
    promotionId: input.promotionId,
    promotionRunId: input.promotionRunId,
    outcome: plan.outcome,
    steps: reports,
    consistent: problems.length === 0,
    problems,
  };

  async function run(step: RecoveryStep): Promise<RecoveryStepReport> {
    switch (step.kind) {
      case 'deploy': {
        const before = await acts.listDeployments({ model, refs });
        if (!before.includes(step.version)) await acts.deployVersion({ model, version: step.version, refs });
        return {
          step: `serving: ${step.version} deployed`,
          before: before.join(', ') || 'none',
          after: before.includes(step.version)
            ? before.join(', ')
            : [...before, step.version].sort().join(', '),
          changed: !before.includes(step.version),
        };
      }
      case 'route': {
        const { route, lease } = await acts.readRoute({ model, refs });
        const done = route !== null && route.weights[step.version] === 100 && !route.shadow;
        if (!done)
          await acts.routeAllTo({
            model,
            version: step.version,
            stickyKey: route?.stickyKey ?? record.stickyKey,
            refs,
            lease: record.leaseHolder,
          });
        // A lease this promotion still holds ends with it (recovery is the promotion's last word).
        if (lease?.holder === record.leaseHolder && lease.state === 'active')
          await acts.releaseLease({
            promotionId: input.promotionId,
            model,
            candidate: record.candidate,
            champion: record.champion ?? '',
            refs,
            holder: record.leaseHolder,
          });
        const leaseNote = lease && lease.holder === record.leaseHolder ? ` (lease ${lease.state})` : '';
        return {
          step: `traffic: 100% to ${step.version}`,
          before: `${show(route?.weights, route?.shadow)}${leaseNote}`,
          after: `${step.version}:100%`,
          changed: !done,
        };
      }
      case 'alias': {
        const current = await acts.getAlias({ model, alias: step.alias, refs });
        const skip = step.onlyIf !== undefined && current !== step.onlyIf;
        const done = skip || current === step.version;
        if (!done) await acts.setAlias({ model, alias: step.alias, version: step.version, refs });
        return {
          step: `registry: ${step.alias} -> ${step.version ?? 'none'}`,
          before: current ?? 'none',
          after: done ? (current ?? 'none') : (step.version ?? 'none'),
          changed: !done,
        };
      }
      case 'policy': {
        const current = await acts.getPolicy({ model, version: step.version, refs });
        const done = JSON.stringify(current) === JSON.stringify(step.thresholds);
        if (!done) await acts.setPolicy({ model, version: step.version, thresholds: step.thresholds, refs });
        return {
          step: `policy: ${step.version} thresholds restored`,
          before: JSON.stringify(current),
          after: JSON.stringify(step.thresholds),
          changed: !done,
        };
      }
      case 'decommission': {
        const before = await acts.listDeployments({ model, refs });
        const running = before.includes(step.version);
        if (running) await acts.decommissionVersion({ model, version: step.version, refs });
        return {
          step: `serving: ${step.version} decommissioned`,
          before: before.join(', ') || 'none',
          after: before.filter((v) => v !== step.version).join(', ') || 'none',
          changed: running,
        };
      }
      case 'tags': {
        await acts.tagVersion({ model, version: step.version, tags: step.tags, refs });
        return {
          step: `registry: ${step.version} tagged promotion.outcome=${step.tags['promotion.outcome']}`,
          before: '',
          after: Object.entries(step.tags)
            .map(([k, v]) => `${k}=${v}`)
            .join(' '),
          changed: true,
        };
      }
    }
  }
}

/** The recovery workflow id of a model: one recovery at a time. */
export function recoveryId(model: string): string {
  return `recover-${model}`;
}
