/**
 * The promotion plan: one zod schema, the single source of the plan's types, defaults, units and
 * JSON Schema. Cross-field rules (ordering, counts) live in ./validate.ts.
 */
import { z } from 'zod';
import { GATE_CHECKS, GATE_METRICS, GUARDRAIL_METRICS, LABEL_METRICS, names } from '../analysis/metrics';
import { DURATION_PATTERN, isDuration, parseDuration } from './duration';

/** The longest duration a plan may name: a year (timers, bakes and watches stay meaningful). */
export const MAX_DURATION_MS = 366 * 86_400_000;

const duration = (what: string) =>
  z
    .string()
    .max(40, 'a duration is at most 40 characters')
    .refine(isDuration, { message: 'expected a duration such as 90s, 5m, 4h or 7d', abort: true })
    .refine((text) => parseDuration(text) <= MAX_DURATION_MS, { message: 'at most 366d' })
    .describe(`${what}. A duration: <number><unit>, units ms, s, m, h, d (e.g. 90s, 5m, 4h, 7d).`)
    .meta({ pattern: DURATION_PATTERN });

/** A significance level: the chance of a false verdict, 0 < alpha < 0.5. */
const alpha = (fallback: number, what: string) =>
  z.number().gt(0).lt(0.5).default(fallback).describe(`${what} Default ${fallback}.`);

const ratio = (what: string) => z.number().min(0).max(1).describe(`${what} (ratio 0..1).`);
const userName = z
  .string()
  .min(1)
  .max(128)
  .regex(/^[A-Za-z0-9._@-]+$/, 'user names are letters, digits and . _ @ -');
/** Names of aliases and datasets: short, printable, no path or control characters. */
const shortName = (what: string) =>
  z
    .string()
    .min(1)
    .max(100)
    .regex(/^[A-Za-z0-9][A-Za-z0-9._-]*$/, `${what}: letters, digits and . _ - (at most 100)`);

/** Bounds that keep a plan (and the workflow state that carries it) small. */
export const PLAN_LIMITS = {
  steps: 20,
  gates: 20,
  guardrails: 20,
  approvers: 50,
  text: 2000,
  /** Slice definitions, distinct slice keys (the gateway records at most this many per request), slices in all. */
  slices: 5,
  sliceKeys: 4,
  sliceValues: 50,
} as const;

/** Where a request's sticky key or slice value comes from: a header or a field of the body. */
export const REQUEST_KEY = /^(header|field):[A-Za-z0-9._-]{1,100}$/;

/** Provider types known to this build; an unknown type is a validation error, never a fallback. */
export const REGISTRY_TYPES = ['inprocess', 'mlflow'] as const;
export const SERVING_TYPES = ['inprocess', 'local'] as const;
export const METRICS_TYPES = ['inprocess', 'local'] as const;
export const NOTIFY_TYPES = ['log'] as const;

export const registrySchema = z
  .strictObject({
    type: z
      .enum(REGISTRY_TYPES)
      .default('inprocess')
      .describe('Model registry provider: mlflow (MLflow Model Registry) or inprocess. Default inprocess.'),
    championAlias: shortName('alias')
      .default('champion')
      .describe('Alias naming the live version. Default champion.'),
    challengerAlias: shortName('alias')
      .default('challenger')
      .describe('Alias set on the candidate while it is promoted. Default challenger.'),
  })
  .describe('Where model versions and aliases live.');

export const servingSchema = z
  .strictObject({
    type: z
      .enum(SERVING_TYPES)
      .default('inprocess')
      .describe(
        'Serving and traffic provider: local (model servers + gateway) or inprocess. Default inprocess.',
      ),
  })
  .describe('Where versions are deployed and traffic is routed.');

export const metricsSchema = z
  .strictObject({
    type: z
      .enum(METRICS_TYPES)
      .default('inprocess')
      .describe(
        "Source of live measurements: local (the gateway's prediction log) or inprocess. Default inprocess.",
      ),
  })
  .describe('Where guardrail measurements come from.');

export const notifySchema = z
  .strictObject({
    type: z
      .enum(NOTIFY_TYPES)
      .default('log')
      .describe('Notifier: log writes a structured log line. Default log.'),
  })
  .describe('Where promotion events are announced.');

export const gateSchema = z
  .strictObject({
    metric: z
      .enum(names(GATE_METRICS))
      .optional()
      .describe('Offline metric to measure (one of metric or check).'),
    check: z
      .enum(GATE_CHECKS)
      .optional()
      .describe('A named check instead of a metric (one of metric or check).'),
    dataset: shortName('dataset')
      .default('holdout')
      .describe('Dataset the metric is measured on. Default holdout.'),
    min: z.number().optional().describe('Lowest acceptable value of the candidate (metric units).'),
    max: z.number().optional().describe('Highest acceptable value of the candidate (metric units).'),
    maxRegressionVsChampion: z
      .number()
      .min(0)
      .optional()
      .describe('Largest allowed regression against the champion, in metric units (absolute difference).'),
  })
  .describe('An offline validation gate, checked before any live traffic.');

export const shadowSchema = z
  .strictObject({
    duration: duration('How long to mirror traffic to the candidate'),
    sampleRate: z
      .number()
      .gt(0)
      .max(1)
      .default(1)
      .describe('Fraction of live requests mirrored to the candidate (0 < rate <= 1). Default 1.'),
    maxDisagreement: ratio(
      'Largest allowed fraction of requests whose decision at the policy threshold differs',
    ).optional(),
    maxScorePsi: z
      .number()
      .min(0)
      .optional()
      .describe('Largest allowed population stability index of the scores.'),
    minPairs: z
      .int()
      .min(1)
      .default(100)
      .describe('Fewest compared request pairs for a verdict. Default 100.'),
    alpha: alpha(
      0.05,
      'Significance of the limits: Fail when the lower confidence bound is above a limit, Pass when the upper bound is within.',
    ),
  })
  .describe(
    'Shadow mode: the candidate sees mirrored traffic; its predictions are compared with the champion.',
  );

export const approvalSchema = z
  .strictObject({
    approvers: z
      .array(userName)
      .min(1)
      .max(PLAN_LIMITS.approvers)
      .describe(`Users allowed to approve or reject this step (at most ${PLAN_LIMITS.approvers}).`),
    required: z.int().min(1).default(1).describe('Approvals needed (N of M). Default 1.'),
    timeout: duration('How long the approval stays open').default('24h'),
    onTimeout: z
      .enum(['abort', 'pause'])
      .default('abort')
      .describe(
        'On timeout: abort rolls back; pause waits for a human (resume re-opens the approval). Default abort.',
      ),
  })
  .describe('Human approval required before traffic moves to this step.');

export const stepSchema = z
  .strictObject({
    traffic: z
      .int()
      .min(1)
      .max(100)
      .describe('Percent of live traffic on the candidate at this step (1..100).'),
    bake: duration('How long to hold this step while guardrails are checked').default('0s'),
    approval: approvalSchema.optional(),
  })
  .describe('A canary step: approval (if any), then the traffic shift, then the bake.');

export const canarySchema = z
  .strictObject({
    assignment: z
      .strictObject({
        stickyKey: z
          .string()
          .max(200)
          .regex(/^(header|field):[A-Za-z0-9._-]+$/, 'expected header:<name> or field:<name>')
          .default('header:x-entity-id')
          .describe('Where the sticky assignment key comes from. Default header:x-entity-id.'),
      })
      .default({ stickyKey: 'header:x-entity-id' })
      .describe('How requests are assigned to versions.'),
    steps: z
      .array(stepSchema)
      .min(1)
      .max(PLAN_LIMITS.steps)
      .describe(`Traffic steps, strictly increasing, ending at 100 (at most ${PLAN_LIMITS.steps}).`),
  })
  .describe('The canary: stepped traffic with bakes and approvals.');

export const guardrailSchema = z
  .strictObject({
    metric: z.enum(names(GUARDRAIL_METRICS)).describe('Live metric measured per version.'),
    max: z.number().optional().describe('Highest acceptable value of the candidate (metric units).'),
    min: z.number().optional().describe('Lowest acceptable value of the candidate (metric units).'),
    relativeIncrease: z
      .number()
      .min(0)
      .max(100)
      .optional()
      .describe(
        'Largest allowed increase over the champion, relative (0.5 = 50% worse; 0 = any significant increase fails).',
      ),
    alpha: alpha(
      0.05,
      "Chance of a false Fail over the whole promotion, however often it is checked (split among the rule's max, min and relativeIncrease).",
    ),
    minSamples: z
      .int()
      .min(1)
      .default(100)
      .describe(
        'Fewest candidate requests for a Pass; below it, Inconclusive (a significant Fail needs no minimum). Default 100.',
      ),
  })
  .describe(
    'A live guardrail: an always-valid test over every traffic split since the first shift, checked during every bake, approval wait and the watch. max and min are tested limits: Fail only when significantly beyond, Pass only when significantly within.',
  );

export const sliceSchema = z
  .strictObject({
    name: z
      .string()
      .regex(/^[a-z][a-z0-9_-]{0,39}$/, 'a slice name is lowercase letters, digits, _ and - (at most 40)')
      .describe('Name shown in verdicts, e.g. country (a slice reads country=DE).'),
    key: z
      .string()
      .max(107)
      .regex(REQUEST_KEY, 'expected header:<name> or field:<name> (letters, digits, . _ -; at most 100)')
      .describe(
        "Where each request's value comes from: header:<name>, or field:<name> (a column of the first row of the body). The gateway records it with every prediction.",
      ),
    values: z
      .array(z.string().min(1).max(100))
      .min(1)
      .max(20)
      .optional()
      .describe('The values checked, each a slice of its own (at most 20). Exactly one of values or top.'),
    top: z
      .int()
      .min(1)
      .max(20)
      .optional()
      .describe(
        'Check the N values with the most traffic: chosen from the traffic seen, added as they appear, never replaced (at most 20).',
      ),
  })
  .describe(
    'A slice dimension: guardrails and label checks run on each of its values as well as overall. Slices can only hold a promotion back by failing; alpha is shared (see guardrails).',
  );

export const srmSchema = z
  .strictObject({
    alpha: alpha(0.001, 'Chance of a false mismatch over the whole promotion.'),
    onMismatch: z
      .enum(['rollback', 'pause'])
      .default('rollback')
      .describe(
        'On a mismatch (no other verdict is trusted): roll back, or pause for a human (a resume accepts the mismatch). Default rollback.',
      ),
  })
  .describe(
    "Sample ratio check: the split of assignment units (entities) between the versions against the route's weights, before any other verdict.",
  );

export const analysisSchema = z
  .strictObject({
    interval: duration('How often guardrails are measured').default('30s'),
    maxExtensions: z
      .int()
      .min(0)
      .default(1)
      .describe(
        'Times a bake is extended (by its own length) when guardrails are not all Pass at its end. Default 1.',
      ),
    onInconclusive: z
      .enum(['rollback', 'pause'])
      .default('pause')
      .describe(
        'After the extensions, Inconclusive or Error: pause for a human, or roll back. Default pause.',
      ),
    onNoData: z
      .enum(['rollback', 'pause'])
      .default('rollback')
      .describe('After the extensions, NoData: roll back, or pause for a human. Default rollback.'),
    maxConsecutiveErrors: z
      .int()
      .min(1)
      .default(3)
      .describe('Measurement errors in a row that count as Fail. Default 3.'),
    lease: duration(
      'Time to live of the traffic lease the gateway holds while the candidate has traffic; not renewed in time, the gateway returns all traffic to the champion by itself. At least twice leaseRenewal. Default 5m',
    ).default('5m'),
    leaseRenewal: duration('How often the promotion renews the traffic lease. Default 1m').default('1m'),
    srm: srmSchema.default({ alpha: 0.001, onMismatch: 'rollback' }),
  })
  .describe('How guardrail verdicts are collected and what non-Pass verdicts mean.');

export const watchSchema = z
  .strictObject({
    window: duration('How long to watch after the candidate reaches full traffic'),
    interval: duration('How often the watch measures guardrails and labels').default('1h'),
    holdbackPercent: z
      .int()
      .min(0)
      .max(50)
      .default(0)
      .describe('Percent of traffic kept on the champion during the watch, for comparison. Default 0.'),
    labels: z
      .strictObject({
        metric: z.enum(names(LABEL_METRICS)).describe('Quality metric from delayed labels.'),
        maxRegression: z
          .number()
          .min(0)
          .describe('Largest allowed regression against the champion (metric units).'),
        minLabels: z
          .int()
          .min(1)
          .default(500)
          .describe('Fewest matured labels per version for a verdict. Default 500.'),
        alpha: alpha(0.05, 'Chance of a false regression verdict over the whole watch.'),
        tau: z
          .number()
          .gt(0)
          .max(1)
          .default(0.03)
          .describe(
            'The difference (metric units) the always-valid interval is tuned to detect fastest. Default 0.03.',
          ),
        maturity: z
          .number()
          .gt(0)
          .lt(1)
          .default(0.9)
          .describe(
            'A prediction counts once it is older than this quantile of the observed label delays. Default 0.9.',
          ),
        passWhen: z
          .enum(['excluded', 'not_significant'])
          .default('excluded')
          .describe(
            'At the end of the watch: pass only when a regression beyond maxRegression is excluded, or also when it is not significant. Default excluded.',
          ),
      })
      .optional()
      .describe(
        'Delayed-label check: candidate and champion quality on matured predictions, with an always-valid interval for the difference.',
      ),
  })
  .describe('The watch after full traffic: the champion stays warm until it ends.');

export const policySchema = z
  .strictObject({
    thresholds: z
      .strictObject({
        block: ratio('Score at or above which the decision is block'),
        review: ratio('Score at or above which the decision is review'),
      })
      .describe('Decision thresholds applied to the candidate score.'),
  })
  .describe('Decision policy rolled out with the candidate and restored on rollback.');

export const planSchema = z
  .strictObject({
    apiVersion: z
      .literal('promote/v1')
      .default('promote/v1')
      .describe('Plan format version. Default promote/v1.'),
    description: z
      .string()
      .max(PLAN_LIMITS.text)
      .optional()
      .describe(`Free text shown in status (at most ${PLAN_LIMITS.text} characters).`),
    registry: registrySchema.default({
      type: 'inprocess',
      championAlias: 'champion',
      challengerAlias: 'challenger',
    }),
    serving: servingSchema.default({ type: 'inprocess' }),
    metrics: metricsSchema.default({ type: 'inprocess' }),
    notify: notifySchema.default({ type: 'log' }),
    gates: z
      .array(gateSchema)
      .max(PLAN_LIMITS.gates)
      .default([])
      .describe(`Offline validation gates, in order (at most ${PLAN_LIMITS.gates}).`),
    shadow: shadowSchema.optional(),
    canary: canarySchema,
    guardrails: z
      .array(guardrailSchema)
      .max(PLAN_LIMITS.guardrails)
      .default([])
      .describe(`Live guardrails (at most ${PLAN_LIMITS.guardrails}).`),
    slices: z
      .array(sliceSchema)
      .max(PLAN_LIMITS.slices)
      .default([])
      .describe(
        `Slices checked separately (at most ${PLAN_LIMITS.slices} definitions over ${PLAN_LIMITS.sliceKeys} keys, ${PLAN_LIMITS.sliceValues} values in all). With slices, each rule's alpha is split: half for the overall test, half shared equally by the slices (Bonferroni), so the chance of any false Fail stays at most alpha.`,
      ),
    analysis: analysisSchema.default({
      interval: '30s',
      maxExtensions: 1,
      onInconclusive: 'pause',
      onNoData: 'rollback',
      maxConsecutiveErrors: 3,
      lease: '5m',
      leaseRenewal: '1m',
      srm: { alpha: 0.001, onMismatch: 'rollback' },
    }),
    watch: watchSchema.optional(),
    policy: policySchema.optional(),
  })
  .describe('A promotion plan: how a candidate model version goes from the registry to 100% of traffic.');

export type Plan = z.output<typeof planSchema>;
export type PlanInput = z.input<typeof planSchema>;
export type Gate = Plan['gates'][number];
export type Step = Plan['canary']['steps'][number];
export type Approval = NonNullable<Step['approval']>;
export type Guardrail = Plan['guardrails'][number];
export type Slice = Plan['slices'][number];
export type Watch = NonNullable<Plan['watch']>;
export type Shadow = NonNullable<Plan['shadow']>;
export type Analysis = Plan['analysis'];
export type PolicyThresholds = NonNullable<Plan['policy']>['thresholds'];
