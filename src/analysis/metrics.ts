/**
 * The metric names a plan may use, what each measures and which direction is better.
 * Pure data: imported by the plan schema (known names) and by the assessments (direction).
 */

export type Direction = 'higher' | 'lower';

export interface MetricInfo {
  unit: string;
  better: Direction;
  description: string;
}

/** Offline quality and latency metrics, measured on the holdout by the validation gates. */
export const GATE_METRICS = {
  auc: { unit: 'ratio 0..1', better: 'higher', description: 'ROC AUC on the holdout' },
  accuracy: {
    unit: 'ratio 0..1',
    better: 'higher',
    description: 'accuracy at the policy threshold on the holdout',
  },
  log_loss: { unit: 'nats', better: 'lower', description: 'log loss on the holdout' },
  latency_p50_ms: {
    unit: 'ms',
    better: 'lower',
    description: 'median latency of the staging server under load',
  },
  latency_p99_ms: {
    unit: 'ms',
    better: 'lower',
    description: '99th percentile latency of the staging server under load',
  },
} as const satisfies Record<string, MetricInfo>;

/** Live metrics measured per version from served traffic during bakes and the watch. */
export const GUARDRAIL_METRICS = {
  error_rate: { unit: 'ratio 0..1', better: 'lower', description: 'failed requests / requests' },
  latency_p50_ms: { unit: 'ms', better: 'lower', description: 'median request latency' },
  latency_p95_ms: { unit: 'ms', better: 'lower', description: '95th percentile request latency' },
  latency_p99_ms: { unit: 'ms', better: 'lower', description: '99th percentile request latency' },
} as const satisfies Record<string, MetricInfo>;

/** Quality metrics computed from delayed labels joined to logged predictions. */
export const LABEL_METRICS = {
  auc: GATE_METRICS.auc,
  accuracy: GATE_METRICS.accuracy,
  log_loss: GATE_METRICS.log_loss,
} as const satisfies Record<string, MetricInfo>;

export type GateMetric = keyof typeof GATE_METRICS;
export type GuardrailMetric = keyof typeof GUARDRAIL_METRICS;
export type LabelMetric = keyof typeof LABEL_METRICS;

export const GATE_CHECKS = ['feature_schema'] as const;
export type GateCheck = (typeof GATE_CHECKS)[number];

export function metricInfo(name: string): MetricInfo | undefined {
  return (
    (GATE_METRICS as Record<string, MetricInfo>)[name] ??
    (GUARDRAIL_METRICS as Record<string, MetricInfo>)[name]
  );
}

/** The names of a catalog, as a non-empty tuple for zod enums. */
export function names<T extends Record<string, unknown>>(
  catalog: T,
): [keyof T & string, ...(keyof T & string)[]] {
  return Object.keys(catalog) as [keyof T & string, ...(keyof T & string)[]];
}
