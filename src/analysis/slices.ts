/**
 * Slices: guardrails and label checks on each slice of the traffic (a country, a client, a
 * segment) as well as overall. The multiplicity is controlled with Bonferroni: a rule's alpha is
 * split in half, the overall test gets one half and the declared slices share the other equally,
 * so the chance that any of them fails falsely stays at most the rule's alpha. A slice can hold a
 * promotion back only by failing (see nextAction): requiring every slice to prove itself would let
 * the smallest slice decide every bake's length. Pure.
 */
import type { Guardrail, Slice, Watch } from '../plan/schema';
import { assessGuardrail, type LiveCounts } from './guardrail';
import { assessLabels, type LabelComparison } from './labels';
import type { Assessment } from './types';

/** The alpha of the overall test and of each slice, for `sliceCount` declared slices. */
export function alphaShares(alpha: number, sliceCount: number): { overall: number; slice: number } {
  return sliceCount === 0
    ? { overall: alpha, slice: 0 }
    : { overall: alpha / 2, slice: alpha / (2 * sliceCount) };
}

/**
 * Slices a plan declares: every listed value, and for a top-N slice N (its values are chosen from
 * the traffic as they appear and never replaced, so at most N are ever tested).
 */
export function declaredSlices(slices: readonly Slice[]): number {
  return slices.reduce((n, s) => n + (s.values?.length ?? s.top ?? 0), 0);
}

/** `country=DE`: how a slice is named in subjects and evidence. */
export const sliceName = (name: string, value: string) => `${name}=${value}`;

function inSlice(a: Assessment, slice: string): Assessment {
  return { ...a, subject: `${a.subject} [${slice}]`, slice };
}

/** Every guardrail overall and on every measured slice, with the alpha shared as described above. */
export function assessGuardrails(
  rules: readonly Guardrail[],
  live: LiveCounts,
  sliceCount: number,
): Assessment[] {
  const out: Assessment[] = [];
  for (const rule of rules) {
    const share = alphaShares(rule.alpha, sliceCount);
    out.push(assessGuardrail({ ...rule, alpha: share.overall }, live));
    for (const s of live.slices ?? []) {
      const error = live.error ?? s.error;
      const counts: LiveCounts = {
        phase: live.phase === 'Error' || s.error !== undefined ? 'Error' : 'Ok',
        splits: s.splits,
        latency: s.latency,
      };
      if (error !== undefined) counts.error = error;
      out.push(inSlice(assessGuardrail({ ...rule, alpha: share.slice }, counts), sliceName(s.name, s.value)));
    }
  }
  return out;
}

/** The label check overall and on every measured slice, with the alpha shared as described above. */
export function assessAllLabels(
  rule: NonNullable<Watch['labels']>,
  comparison: LabelComparison,
  sliceCount: number,
): Assessment[] {
  const share = alphaShares(rule.alpha, sliceCount);
  return [
    assessLabels({ ...rule, alpha: share.overall }, comparison),
    ...(comparison.slices ?? []).map((s) =>
      inSlice(assessLabels({ ...rule, alpha: share.slice }, s.comparison), sliceName(s.name, s.value)),
    ),
  ];
}
