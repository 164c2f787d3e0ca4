/**
 * What a promotion records for `promote recover` (in its memo, readable without a worker even after
 * the run was terminated), and the pure plan of what recovery does with it. No Temporal imports.
 */
import type { Outcome, Stage, Touched } from './types';

/** The recovery record a promotion keeps in its memo (`recovery`), updated as it acts. */
export interface RecoveryRecord {
  champion: string | null;
  candidate: string;
  stage: Stage;
  trafficPercent: number;
  /** Past the point of no return: the candidate is the champion. */
  committed: boolean;
  outcome: Outcome | null;
  /** The lease holder id of this promotion (stable for its whole life). */
  leaseHolder: string;
  touched: Touched;
  championAlias: string;
  challengerAlias: string;
  stickyKey: string;
  /** The provider types of the promotion's plan. */
  refs: { registry: string; serving: string; metrics: string; notify: string };
}

/** Whether the promotion may have left anything behind (it acted and did not complete). */
export function needsRecovery(record: RecoveryRecord | undefined): boolean {
  if (!record || record.outcome !== null) return false;
  const t = record.touched;
  return (
    t.deployed ||
    t.traffic ||
    t.shadow ||
    t.championDecommissioned ||
    t.challengerAlias !== null ||
    t.championAlias !== null ||
    t.policy !== null ||
    record.committed
  );
}

/** One idempotent recovery action. */
export type RecoveryStep =
  | { kind: 'deploy'; version: string }
  | { kind: 'route'; version: string }
  | { kind: 'alias'; alias: string; version: string | null; onlyIf?: string }
  | { kind: 'policy'; version: string; thresholds: NonNullable<Touched['policy']>['previous'] }
  | { kind: 'decommission'; version: string }
  | { kind: 'tags'; version: string; tags: Record<string, string> };

export interface RecoveryPlan {
  /** What the model is brought back to: the champion restored, or the candidate promoted. */
  outcome: 'recovered' | 'succeeded';
  /** The version that serves all traffic afterwards, if any traffic was ever touched. */
  serving: string | null;
  steps: RecoveryStep[];
}

/**
 * The steps that bring a model back to a consistent state from what its promotion recorded:
 * past the point of no return, the candidate's promotion is finished; otherwise everything is
 * undone in the rollback's order (traffic, registry, policy, serving), then the version is tagged.
 */
export function planRecovery(
  record: RecoveryRecord,
  who: { by: string; reason: string; atIso: string; promotionId: string },
): RecoveryPlan {
  const t = record.touched;
  const candidate = record.candidate;
  const tags = (outcome: string) => ({
    'promotion.id': who.promotionId,
    'promotion.phase': 'completed',
    'promotion.outcome': outcome,
    'promotion.recovered_by': who.by,
    'promotion.recovered_at': who.atIso,
    'promotion.recovery_reason': who.reason.slice(0, 500),
  });
  const challengerBack: RecoveryStep = {
    kind: 'alias',
    alias: record.challengerAlias,
    version:
      t.challengerAlias?.previous && t.challengerAlias.previous !== candidate
        ? t.challengerAlias.previous
        : null,
    // Only undo our own change: a challenger alias someone moved since is left alone.
    onlyIf: candidate,
  };
  if ((record.committed || record.outcome === 'succeeded') && record.champion !== null) {
    const old = record.champion;
    return {
      outcome: 'succeeded',
      serving: candidate,
      steps: [
        { kind: 'route', version: candidate },
        { kind: 'alias', alias: record.championAlias, version: candidate },
        challengerBack,
        ...(old !== candidate ? [{ kind: 'decommission' as const, version: old }] : []),
        { kind: 'tags', version: candidate, tags: tags('succeeded') },
      ],
    };
  }
  const steps: RecoveryStep[] = [];
  const champion = record.champion;
  if (champion !== null) {
    steps.push({ kind: 'deploy', version: champion }, { kind: 'route', version: champion });
    steps.push({ kind: 'alias', alias: record.championAlias, version: champion });
  }
  steps.push(challengerBack);
  if (t.policy !== null) steps.push({ kind: 'policy', version: candidate, thresholds: t.policy.previous });
  if (candidate !== champion) steps.push({ kind: 'decommission', version: candidate });
  steps.push({ kind: 'tags', version: candidate, tags: tags('recovered') });
  return { outcome: 'recovered', serving: champion, steps };
}
