/**
 * Plan validation: the zod schema plus the cross-field rules, every problem reported with its path.
 * Pure (no I/O); see ./load.ts for reading files.
 */
import type { z } from 'zod';
import { PlanError, type Issue } from '../common/errors';
import { MAX_LEASE_TTL_MS, MIN_LEASE_TTL_MS } from '../serving/lease';
import { isDuration, parseDuration } from './duration';
import { PLAN_LIMITS, planSchema, type Plan } from './schema';

/** `canary.steps[1].traffic` from `['canary', 'steps', 1, 'traffic']`. */
export function formatPath(path: readonly PropertyKey[]): string {
  let out = '';
  for (const part of path) {
    if (typeof part === 'number') out += `[${part}]`;
    else out += out ? `.${String(part)}` : String(part);
  }
  return out;
}

function zodIssues(error: z.ZodError): Issue[] {
  return error.issues.flatMap((issue) =>
    issue.code === 'unrecognized_keys'
      ? issue.keys.map((key) => ({ path: formatPath([...issue.path, key]), message: 'unknown field' }))
      : [{ path: formatPath(issue.path), message: issue.message }],
  );
}

type Loose = Record<string, unknown>;
const obj = (v: unknown): Loose | undefined =>
  v && typeof v === 'object' && !Array.isArray(v) ? (v as Loose) : undefined;
const arr = (v: unknown): unknown[] => (Array.isArray(v) ? v : []);
const durationMs = (v: unknown): number | undefined =>
  typeof v === 'string' && v.length <= 40 && isDuration(v) ? parseDuration(v) : undefined;
const num = (v: unknown): number | undefined => (typeof v === 'number' && Number.isFinite(v) ? v : undefined);

/**
 * The rules that span several fields. Runs on the raw document so that its problems are reported
 * together with the schema's, even when other parts of the plan are malformed.
 */
export function crossFieldIssues(doc: unknown): Issue[] {
  const issues: Issue[] = [];
  const plan = obj(doc) ?? {};
  const add = (path: string, message: string) => issues.push({ path, message });

  const steps = arr(obj(plan.canary)?.steps);
  let previous: number | undefined;
  steps.forEach((raw, i) => {
    const step = obj(raw);
    const traffic = num(step?.traffic);
    if (traffic !== undefined && previous !== undefined && traffic <= previous) {
      add(
        `canary.steps[${i}].traffic`,
        `traffic must be strictly greater than the previous step's (${previous})`,
      );
    }
    if (traffic !== undefined) previous = traffic;
    const approval = obj(step?.approval);
    if (approval) {
      const approvers = arr(approval.approvers);
      const required = num(approval.required) ?? 1;
      if (approvers.length > 0 && (required < 1 || required > approvers.length)) {
        add(
          `canary.steps[${i}].approval.required`,
          `required must be between 1 and the number of approvers (${approvers.length})`,
        );
      }
      const seen = new Set<unknown>();
      approvers.forEach((a, j) => {
        if (seen.has(a))
          add(`canary.steps[${i}].approval.approvers[${j}]`, `approver "${String(a)}" is listed twice`);
        seen.add(a);
      });
    }
  });
  const last = obj(steps[steps.length - 1]);
  if (steps.length > 0 && num(last?.traffic) !== undefined && num(last?.traffic) !== 100) {
    add(`canary.steps[${steps.length - 1}].traffic`, 'the last step must bring traffic to 100');
  }

  arr(plan.gates).forEach((raw, i) => {
    const gate = obj(raw);
    if (!gate) return;
    const hasMetric = gate.metric !== undefined;
    const hasCheck = gate.check !== undefined;
    if (hasMetric === hasCheck) add(`gates[${i}]`, 'a gate needs exactly one of metric or check');
    const limits = ['min', 'max', 'maxRegressionVsChampion'].filter((k) => gate[k] !== undefined);
    if (hasMetric && limits.length === 0) {
      add(`gates[${i}]`, 'a metric gate needs at least one of min, max or maxRegressionVsChampion');
    }
    if (hasCheck && limits.length > 0) add(`gates[${i}].${limits[0]}`, 'a check gate takes no limits');
    const min = num(gate.min);
    const max = num(gate.max);
    if (min !== undefined && max !== undefined && min > max)
      add(`gates[${i}].min`, `min (${min}) is above max (${max})`);
  });

  arr(plan.guardrails).forEach((raw, i) => {
    const rule = obj(raw);
    if (!rule) return;
    if (rule.max === undefined && rule.min === undefined && rule.relativeIncrease === undefined) {
      add(`guardrails[${i}]`, 'a guardrail needs at least one of max, min or relativeIncrease');
    }
    const min = num(rule.min);
    const max = num(rule.max);
    if (min !== undefined && max !== undefined && min > max)
      add(`guardrails[${i}].min`, `min (${min}) is above max (${max})`);
  });

  const sliceNames = new Set<unknown>();
  const sliceKeys = new Set<unknown>();
  let sliceValues = 0;
  arr(plan.slices).forEach((raw, i) => {
    const slice = obj(raw);
    if (!slice) return;
    if (slice.name !== undefined && sliceNames.has(slice.name))
      add(`slices[${i}].name`, `slice name ${String(JSON.stringify(slice.name)).slice(0, 80)} is used twice`);
    sliceNames.add(slice.name);
    if (typeof slice.key === 'string') {
      sliceKeys.add(slice.key);
      if (sliceKeys.size === PLAN_LIMITS.sliceKeys + 1)
        add(`slices[${i}].key`, `at most ${PLAN_LIMITS.sliceKeys} distinct slice keys`);
    }
    const hasValues = slice.values !== undefined;
    if (hasValues === (slice.top !== undefined))
      add(`slices[${i}]`, 'a slice needs exactly one of values or top');
    const values = arr(slice.values);
    const seen = new Set<unknown>();
    values.forEach((v, j) => {
      if (seen.has(v))
        add(`slices[${i}].values[${j}]`, `value ${String(JSON.stringify(v)).slice(0, 80)} is listed twice`);
      seen.add(v);
    });
    const before = sliceValues;
    sliceValues += hasValues ? values.length : (num(slice.top) ?? 0);
    if (before <= PLAN_LIMITS.sliceValues && sliceValues > PLAN_LIMITS.sliceValues)
      add(`slices[${i}]`, `at most ${PLAN_LIMITS.sliceValues} slice values in all (values and top)`);
  });

  const analysis = obj(plan.analysis);
  const leaseText = typeof analysis?.lease === 'string' ? analysis.lease : '5m';
  const renewalText = typeof analysis?.leaseRenewal === 'string' ? analysis.leaseRenewal : '1m';
  const lease = durationMs(leaseText);
  const renewal = durationMs(renewalText);
  if (lease !== undefined && renewal !== undefined) {
    if (lease < 2 * renewal)
      add('analysis.lease', `the lease (${leaseText}) must be at least twice leaseRenewal (${renewalText})`);
    if (lease < MIN_LEASE_TTL_MS)
      add('analysis.lease', `the lease must be at least ${MIN_LEASE_TTL_MS / 1000}s`);
    if (lease > MAX_LEASE_TTL_MS)
      add('analysis.lease', `the lease must be at most ${MAX_LEASE_TTL_MS / 86_400_000}d`);
  }

  const shadow = obj(plan.shadow);
  if (shadow && shadow.maxDisagreement === undefined && shadow.maxScorePsi === undefined) {
    add('shadow', 'shadow needs at least one of maxDisagreement or maxScorePsi to give a verdict');
  }

  const thresholds = obj(obj(plan.policy)?.thresholds);
  const block = num(thresholds?.block);
  const review = num(thresholds?.review);
  if (block !== undefined && review !== undefined && review >= block) {
    add('policy.thresholds.review', `review (${review}) must be below block (${block})`);
  }
  return issues;
}

/** Validates a parsed document; returns the plan with defaults applied, or every problem found. */
export function checkPlan(doc: unknown): { plan: Plan; issues: [] } | { plan: undefined; issues: Issue[] } {
  const parsed = planSchema.safeParse(doc);
  const issues = [...(parsed.success ? [] : zodIssues(parsed.error)), ...crossFieldIssues(doc)];
  const seen = new Set<string>();
  const unique = issues.filter((i) => {
    const key = `${i.path}\u0000${i.message}`;
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
  if (parsed.success && unique.length === 0) return { plan: parsed.data, issues: [] };
  return { plan: undefined, issues: unique };
}

/** Validates a parsed document or throws PlanError naming `source` and every problem. */
export function parsePlan(doc: unknown, source = 'plan'): Plan {
  const result = checkPlan(doc);
  if (result.plan === undefined) throw new PlanError(source, result.issues);
  return result.plan;
}
