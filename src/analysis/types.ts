/** Measurements and verdicts: the data that flows from providers into the pure assessments. */

/** What an assessment concluded. NoData and Inconclusive are outcomes in their own right, never Pass. */
export const VERDICTS = ['Pass', 'Fail', 'Inconclusive', 'NoData', 'Error'] as const;
export type Verdict = (typeof VERDICTS)[number];

/**
 * One measured value of one metric for one version over a window. A provider that could not
 * measure returns phase `Error` with the reason instead of throwing, so the plan decides what it means.
 */
export interface Measurement {
  metric: string;
  version: string;
  /** The metric's value in its unit, or null when nothing was observed. */
  value: number | null;
  /** Observations behind the value (requests, labels, holdout rows, compared pairs). */
  samples: number;
  /** For rate metrics: the count of events (e.g. errors) among `samples`. */
  events?: number;
  phase: 'Ok' | 'Error';
  error?: string;
  /** Free-text detail from the provider (e.g. which features are missing). */
  detail?: string;
  /** Window measured, epoch ms. */
  fromMs?: number;
  toMs?: number;
}

/** An assessment's verdict with the evidence a human needs to trust it. */
export interface Assessment {
  /** What was assessed, e.g. `guardrail error_rate` or `gate auc`. */
  subject: string;
  verdict: Verdict;
  evidence: string;
  candidate?: number | null;
  champion?: number | null;
  samples?: number;
}

/** The worst verdict of several: Fail > Error > NoData > Inconclusive > Pass (Pass only if all pass). */
export function combineVerdicts(verdicts: readonly Verdict[]): Verdict {
  for (const v of ['Fail', 'Error', 'NoData', 'Inconclusive'] as const) if (verdicts.includes(v)) return v;
  return 'Pass';
}

/** A fixed, short rendering of a metric value for evidence strings. */
export function fmt(value: number | null | undefined): string {
  if (value === null || value === undefined) return 'none';
  if (Number.isInteger(value)) return String(value);
  return Math.abs(value) >= 100 ? value.toFixed(1) : Number(value.toPrecision(4)).toString();
}
