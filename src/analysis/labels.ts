/** Delayed-label assessment for the watch. Pure. */
import type { Watch } from '../plan/schema';
import { LABEL_METRICS } from './metrics';
import { accuracy, auc, logLoss } from './stats';
import { fmt, type Assessment, type Measurement } from './types';

export function assessLabels(
  rule: NonNullable<Watch['labels']>,
  candidate: Measurement,
  champion?: Measurement,
): Assessment {
  const subject = `labels ${rule.metric}`;
  const base = {
    subject,
    candidate: candidate.value,
    champion: champion?.value ?? null,
    samples: candidate.samples,
  };
  if (candidate.phase === 'Error')
    return { ...base, verdict: 'Error', evidence: `measuring failed: ${candidate.error ?? ''}` };
  if (candidate.samples === 0 || candidate.value === null)
    return { ...base, verdict: 'NoData', evidence: 'no labels joined yet' };
  if (candidate.samples < rule.minLabels) {
    return {
      ...base,
      verdict: 'Inconclusive',
      evidence: `only ${candidate.samples} of ${rule.minLabels} required labels`,
    };
  }
  if (
    !champion ||
    champion.phase === 'Error' ||
    champion.value === null ||
    champion.samples < rule.minLabels
  ) {
    return {
      ...base,
      verdict: 'Inconclusive',
      evidence: `champion has ${champion?.samples ?? 0} labels, too few to compare`,
    };
  }
  const regression =
    LABEL_METRICS[rule.metric].better === 'higher'
      ? champion.value - candidate.value
      : candidate.value - champion.value;
  const facts = `${rule.metric} ${fmt(candidate.value)} vs champion ${fmt(champion.value)} on ${candidate.samples} labels`;
  return regression > rule.maxRegression + 1e-9
    ? {
        ...base,
        verdict: 'Fail',
        evidence: `${facts}: regression ${fmt(regression)} > max ${fmt(rule.maxRegression)}`,
      }
    : { ...base, verdict: 'Pass', evidence: facts };
}

/** A quality metric (auc, log_loss, accuracy at 0.5) over labelled scores, as a measurement. */
export function labelMeasurement(
  rows: readonly { score: number; label: number }[],
  q: { metric: string; version: string; fromMs?: number; toMs?: number },
): Measurement {
  const base = {
    metric: q.metric,
    version: q.version,
    samples: rows.length,
    phase: 'Ok' as const,
    fromMs: q.fromMs,
    toMs: q.toMs,
  };
  if (rows.length === 0) return { ...base, value: null };
  const scores = rows.map((r) => r.score);
  const labels = rows.map((r) => r.label);
  const value =
    q.metric === 'auc'
      ? auc(scores, labels)
      : q.metric === 'log_loss'
        ? logLoss(scores, labels)
        : accuracy(scores, labels);
  return { ...base, value: Number.isNaN(value) ? null : value };
}
