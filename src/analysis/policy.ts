/**
 * What a round of verdicts means for the promotion: the one policy function, pure and
 * table-tested (test/unit/policy.test.ts). The workflow measures, assesses, and then does what
 * `nextAction` says.
 */
import type { Analysis } from '../plan/schema';
import { combineVerdicts, type Assessment, type Verdict } from './types';

export type Action =
  /** Nothing to act on: keep waiting (at a look), or go on to the next stage (at the end). */
  | { kind: 'continue' }
  /** The end of a wait without a decision: wait again (another bake's length). */
  | { kind: 'extend'; reason: string; evidence: string[] }
  /** Hold traffic where it is for a human; `cause` srm: a resume accepts the mismatch. */
  | { kind: 'pause'; reason: string; evidence: string[]; cause: 'srm' | 'verdict' }
  | { kind: 'rollback'; reason: string; evidence: string[] };

export interface PolicyInput {
  /** A periodic look while traffic is live, or the end of a bake or of the watch. */
  moment: 'look' | 'end';
  /** What is ending, for reasons (e.g. `step 1 bake`, `watch`). */
  what: string;
  trafficPercent: number;
  /** The sample-ratio check of this round (null when there is no split to check). */
  srm: Assessment | null;
  /** Guardrail and label assessments of this round. */
  assessments: readonly Assessment[];
  /** Measurement errors in a row per subject, including this round. */
  consecutiveErrors: Readonly<Record<string, number>>;
  extensions: number;
  /** A human resumed after a mismatch: the mismatch is accepted and the other verdicts count. */
  srmAccepted: boolean;
  analysis: Analysis;
  /** At the end of the watch, whether the labels pass when a regression is only not significant. */
  labelsPassWhen?: 'excluded' | 'not_significant';
}

const evidenceOf = (as: readonly Assessment[]) => as.map((a) => `${a.subject}: ${a.evidence}`);

/**
 * The order: a sample-ratio mismatch first (no other verdict is trusted while traffic does not
 * match the route), then any Fail, then measurements failing maxConsecutiveErrors times in a row
 * (each rolls back). At a look nothing else acts. At the end of a wait everything must be Pass:
 * otherwise the wait is extended up to maxExtensions times, then NoData follows onNoData and
 * Inconclusive or Error follow onInconclusive. A slice's assessment acts only by failing; its
 * other verdicts never hold the end of a wait (the overall assessment decides it).
 */
export function nextAction(input: PolicyInput): Action {
  const { analysis, srm, trafficPercent } = input;
  if (srm?.verdict === 'Fail' && !input.srmAccepted) {
    const reason = `sample ratio mismatch at ${trafficPercent}% traffic`;
    return analysis.srm.onMismatch === 'rollback'
      ? { kind: 'rollback', reason, evidence: evidenceOf([srm]) }
      : {
          kind: 'pause',
          reason: `${reason}; no other verdict is trusted. Resume accepts the mismatch, abort rolls back`,
          evidence: evidenceOf([srm]),
          cause: 'srm',
        };
  }
  const all = srm ? [srm, ...input.assessments] : [...input.assessments];
  const failed = all.filter((a) => a.verdict === 'Fail');
  if (failed.length > 0)
    return {
      kind: 'rollback',
      reason: `${failed.map((a) => a.subject).join(', ')} failed at ${trafficPercent}% traffic`,
      evidence: evidenceOf(failed),
    };
  const max = analysis.maxConsecutiveErrors;
  const erring = all.filter((a) => a.verdict === 'Error' && (input.consecutiveErrors[a.subject] ?? 0) >= max);
  if (erring.length > 0)
    return {
      kind: 'rollback',
      reason: `${erring.map((a) => a.subject).join(', ')} could not be measured ${max} times in a row`,
      evidence: evidenceOf(erring),
    };
  if (input.moment === 'look') return { kind: 'continue' };
  const verdicts: Verdict[] = all.map((a) =>
    a.slice !== undefined ||
    (a.verdict === 'Inconclusive' &&
      a.subject.startsWith('labels ') &&
      input.labelsPassWhen === 'not_significant')
      ? 'Pass'
      : a.verdict,
  );
  const verdict = combineVerdicts(verdicts);
  if (verdict === 'Pass') return { kind: 'continue' };
  const open = all.filter((_, i) => verdicts[i] !== 'Pass');
  if (input.extensions < analysis.maxExtensions)
    return {
      kind: 'extend',
      reason: `${input.what}: guardrails ${verdict}; extension ${input.extensions + 1} of ${analysis.maxExtensions}`,
      evidence: evidenceOf(open),
    };
  const action = verdict === 'NoData' ? analysis.onNoData : analysis.onInconclusive;
  const reason = `${input.what}: guardrails ${verdict} after ${analysis.maxExtensions} extension(s)`;
  return action === 'rollback'
    ? { kind: 'rollback', reason, evidence: evidenceOf(open) }
    : {
        kind: 'pause',
        reason: `${reason}; resume to continue anyway, abort to roll back`,
        evidence: evidenceOf(open),
        cause: 'verdict',
      };
}
