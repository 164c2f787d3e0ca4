/**
 * The consistency checks run after every promotion and every recovery: what the outcome says must
 * be what the data plane, the registry and the processes say. Each check answers ok or not with
 * its evidence; nothing is retried into passing.
 */
import { NotFoundError } from '../../src/common/errors';
import type { Decision } from '../../src/workflows/types';
import { serverGroups, serverRecords } from './servers';
import type { TrialStack } from './stack';

export interface CheckResult {
  check: string;
  ok: boolean;
  detail: string;
}

/** What the end state must be. */
export interface Expectation {
  model: string;
  /** The version that must have all traffic, the champion alias and the only model server. */
  serving: string;
  candidate: string;
  /** The outcome tag the candidate version must carry (`promotion.outcome`). */
  outcomeTag: string;
  /** The promotion's decision log, when it could be read (null: not checked, and said so). */
  decisions: Decision[] | null;
}

/** Kinds a promotion records at most once. */
const ONCE: Decision['kind'][] = ['started', 'staged', 'watch', 'promoted', 'completed'];
/** Kinds whose entries name one step each: the same text twice is a step done twice. */
const PER_STEP: Decision['kind'][] = ['traffic', 'rollback', 'gate', 'shadow'];

/**
 * Steps recorded more than once in a decision log, and traffic steps out of order. Pure; an
 * empty answer means no duplicated step.
 */
export function duplicatedSteps(decisions: readonly Decision[]): string[] {
  const problems: string[] = [];
  const seen = new Map<string, number>();
  for (const d of decisions) {
    let key: string | null = null;
    if (ONCE.includes(d.kind)) key = d.kind;
    else if (PER_STEP.includes(d.kind)) key = `${d.kind}: ${d.reason}`;
    else if (d.kind === 'lease' && d.reason.startsWith('traffic lease released: past the point of no return'))
      key = `lease: ${d.reason}`;
    if (key !== null) seen.set(key, (seen.get(key) ?? 0) + 1);
  }
  for (const [key, count] of seen) if (count > 1) problems.push(`${count}x ${key}`);
  let last = 0;
  for (const d of decisions) {
    if (d.kind !== 'traffic') continue;
    const step = Number(/^step (\d+) of/.exec(d.reason)?.[1] ?? NaN);
    if (Number.isFinite(step) && step <= last)
      problems.push(`traffic step ${step} recorded after step ${last}`);
    if (Number.isFinite(step)) last = step;
  }
  return problems;
}

const show = (v: unknown) => JSON.stringify(v);

/** Runs every check against the live stack; the stack's services must be up. */
export async function checkConsistency(stack: TrialStack, e: Expectation): Promise<CheckResult[]> {
  const out: CheckResult[] = [];
  const add = (check: string, ok: boolean, detail: string) => out.push({ check, ok, detail });
  const attempt = async (check: string, fn: () => Promise<void> | void) => {
    try {
      await fn();
    } catch (err) {
      add(check, false, `could not be read: ${(err as Error).message}`);
    }
  };

  await attempt('route', async () => {
    const route = await stack.gatewayClient.admin<{
      weights: Record<string, number>;
      shadow: unknown;
    }>('GET', `routes/${encodeURIComponent(e.model)}`);
    const live = Object.entries(route.weights).filter(([, w]) => w > 0);
    const ok = live.length === 1 && live[0]![0] === e.serving && live[0]![1] === 100 && route.shadow === null;
    add(
      'route',
      ok,
      `weights ${show(route.weights)}, shadow ${show(route.shadow)}; expected ${e.serving}:100`,
    );
  });

  await attempt('champion alias', async () => {
    const champion = await stack.registry.getAlias(e.model, 'champion');
    add('champion alias', champion === e.serving, `champion -> ${champion}; expected ${e.serving}`);
  });

  await attempt('challenger alias', async () => {
    const challenger = await stack.registry.getAlias(e.model, 'challenger');
    add('challenger alias', challenger === null, `challenger -> ${challenger ?? 'none'}; expected none`);
  });

  await attempt('outcome tag', async () => {
    const { tags } = await stack.registry.getVersion(e.model, e.candidate);
    const ok = tags['promotion.outcome'] === e.outcomeTag && tags['promotion.phase'] === 'completed';
    add(
      'outcome tag',
      ok,
      `version ${e.candidate}: promotion.phase=${tags['promotion.phase']} promotion.outcome=${tags['promotion.outcome']}; expected completed/${e.outcomeTag}`,
    );
  });

  await attempt('model servers', () => {
    const records = serverRecords(stack.serversDir).filter((r) => r.model === e.model);
    const groups = serverGroups(stack.mlflowUrl);
    const problems: string[] = [];
    const recorded = records.map((r) => r.version).sort();
    if (show(recorded) !== show([e.serving]))
      problems.push(`servers.json has ${show(recorded)}, expected ${show([e.serving])}`);
    for (const r of records) {
      const group = groups.find((g) => g.pgid === r.pid);
      if (!group) problems.push(`the recorded server of ${r.version} (pid ${r.pid}) is not running`);
      else if (group.version !== r.version)
        problems.push(`pid ${r.pid} serves ${group.version ?? 'nothing known'}, recorded as ${r.version}`);
    }
    const perVersion = new Map<string, number>();
    for (const g of groups) {
      const v = g.version ?? '?';
      perVersion.set(v, (perVersion.get(v) ?? 0) + 1);
      if (!records.some((r) => r.pid === g.pgid))
        problems.push(
          `orphan: process group ${g.pgid} (${g.model ?? '?'}/${v}, pids ${g.pids.join(' ')}: ${g.command})`,
        );
    }
    for (const [v, n] of perVersion) if (n > 1) problems.push(`${n} process groups serve ${v}`);
    add(
      'model servers',
      problems.length === 0,
      problems.length === 0
        ? `one server for ${e.serving} (pid ${records[0]?.pid}), nothing else`
        : problems.join('; '),
    );
  });

  await attempt('lease', async () => {
    const lease = await stack.gatewayClient
      .admin<{ state: string; holder: string }>('GET', `leases/${encodeURIComponent(e.model)}`)
      .catch((err: unknown) => {
        if (err instanceof NotFoundError) return null;
        throw err;
      });
    add(
      'lease',
      lease === null || lease.state !== 'active',
      lease ? `lease of ${lease.holder} is ${lease.state}` : 'no lease',
    );
  });

  if (e.decisions === null) add('decision log', false, 'the decision log could not be read');
  else {
    const dups = duplicatedSteps(e.decisions);
    add(
      'decision log',
      dups.length === 0,
      dups.length === 0 ? `${e.decisions.length} decisions, no step twice` : dups.join('; '),
    );
  }
  return out;
}
