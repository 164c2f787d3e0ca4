/**
 * The promotion workflow's messages and their schemas. Signals work from `temporal workflow
 * signal` and the Temporal UI; every command is also an update answered by the same rules, so the
 * CLI learns at once whether it counted. Payloads arrive as arbitrary JSON from anyone who can reach
 * the Temporal frontend: each is parsed against a schema with bounds before any rule looks at it.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import { z } from 'zod';
import type { PromotionStatus } from './types';

/** Bounds of message fields (characters). */
export const MESSAGE_LIMITS = { by: 128, text: 2000 } as const;

/** No control characters and no line or paragraph separators. */
const PRINTABLE_LINE = /^[^\p{Cc}\p{Zl}\p{Zp}]*$/u;
/** Free text: printable, with line breaks and tabs allowed. */
const PRINTABLE_TEXT = /^(?:[^\p{Cc}\p{Zl}\p{Zp}]|[\n\t])*$/u;

/** The error for a missing or non-string field. */
const typeError = (field: string, hint?: string) => (issue: { input?: unknown }) =>
  issue.input === undefined
    ? `${field} is required${hint ? `: ${hint}` : ''}`
    : `${field} must be a string${hint ? `: ${hint}` : ''}`;

const by = z
  .string({ error: typeError('by', 'the name of the user sending it') })
  .trim()
  .min(1, 'by is required: the name of the user sending it')
  .max(MESSAGE_LIMITS.by, `by is at most ${MESSAGE_LIMITS.by} characters`)
  .regex(PRINTABLE_LINE, 'by must be printable characters on one line');

const text = (field: string) =>
  z
    .string({ error: typeError(field) })
    .trim()
    .max(MESSAGE_LIMITS.text, `${field} is at most ${MESSAGE_LIMITS.text} characters`)
    .regex(PRINTABLE_TEXT, `${field} must be printable text`);

const required = (field: string) => text(field).min(1, `${field} is required`);
const optional = (field: string) =>
  text(field)
    .optional()
    .transform((v) => (v === '' ? undefined : v));

export const approveInputSchema = z.object({ by, comment: optional('comment') });
export const rejectInputSchema = z.object({ by, reason: required('reason') });
export const abortInputSchema = z.object({ by, reason: required('reason') });
export const pauseInputSchema = z.object({ by, reason: optional('reason') });
export const resumeInputSchema = z.object({ by, reason: optional('reason') });

export type ApproveInput = z.input<typeof approveInputSchema>;
export type RejectInput = z.input<typeof rejectInputSchema>;
export type AbortInput = z.input<typeof abortInputSchema>;
export type PauseInput = z.input<typeof pauseInputSchema>;
export type ResumeInput = z.input<typeof resumeInputSchema>;

export type MessageKind = 'approve' | 'reject' | 'abort' | 'pause' | 'resume';

const SCHEMAS = {
  approve: approveInputSchema,
  reject: rejectInputSchema,
  abort: abortInputSchema,
  pause: pauseInputSchema,
  resume: resumeInputSchema,
} as const;

export interface ParsedMessage {
  by: string;
  /** The comment (approve) or reason (the others), if any. */
  note: string | undefined;
}

/**
 * Parses a payload. The answer never repeats the input: a refusal names the field and the rule,
 * and `who` is the sender's name only when that name itself is valid.
 */
export function parseMessage(
  kind: MessageKind,
  payload: unknown,
): { ok: true; value: ParsedMessage } | { ok: false; who: string; why: string } {
  const result = SCHEMAS[kind].safeParse(payload ?? {});
  if (result.success) {
    const v = result.data as { by: string; comment?: string; reason?: string };
    return { ok: true, value: { by: v.by, note: v.comment ?? v.reason } };
  }
  const whoResult = by.safeParse(
    payload && typeof payload === 'object' ? (payload as { by?: unknown }).by : undefined,
  );
  const first = result.error.issues[0];
  const why =
    first?.code === 'invalid_type' && first.path.length === 0
      ? `${kind} needs an object like {"by": "<user>"}`
      : (first?.message ?? `${kind}: invalid payload`);
  return { ok: false, who: whoResult.success ? whoResult.data : '(invalid sender)', why };
}

/** The answer to a message: accepted or refused with the reason. */
export interface MessageResult {
  accepted: boolean;
  message: string;
  /** For votes: approvals received and required on the pending step. */
  received?: number;
  required?: number;
}

export const approveSignal = defineSignal<[ApproveInput]>('approve');
export const rejectSignal = defineSignal<[RejectInput]>('reject');
export const abortSignal = defineSignal<[AbortInput]>('abort');
export const pauseSignal = defineSignal<[PauseInput]>('pause');
export const resumeSignal = defineSignal<[ResumeInput]>('resume');

export const approveUpdate = defineUpdate<MessageResult, [ApproveInput]>('approve');
export const rejectUpdate = defineUpdate<MessageResult, [RejectInput]>('reject');
export const abortUpdate = defineUpdate<MessageResult, [AbortInput]>('abort');
export const pauseUpdate = defineUpdate<MessageResult, [PauseInput]>('pause');
export const resumeUpdate = defineUpdate<MessageResult, [ResumeInput]>('resume');

export const statusQuery = defineQuery<PromotionStatus>('status');
