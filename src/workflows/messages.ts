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

/** The message schemas by kind: the specification `parseMessage` implements. */
export const MESSAGE_SCHEMAS = {
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

type Parsed = { ok: true; value: ParsedMessage } | { ok: false; who: string; why: string };

/** The note field of each message and whether it is required. */
const NOTE: Record<MessageKind, { field: 'comment' | 'reason'; required: boolean }> = {
  approve: { field: 'comment', required: false },
  reject: { field: 'reason', required: true },
  abort: { field: 'reason', required: true },
  pause: { field: 'reason', required: false },
  resume: { field: 'reason', required: false },
};

/** A checked string field: the trimmed value, or why it is refused. */
function checkText(
  value: unknown,
  field: string,
  opts: { hint?: string; max: number; pattern: RegExp; required: boolean },
): { value: string | undefined } | { why: string } {
  const hint = opts.hint ? `: ${opts.hint}` : '';
  if (value === undefined)
    return opts.required ? { why: `${field} is required${hint}` } : { value: undefined };
  if (typeof value !== 'string') return { why: `${field} must be a string${hint}` };
  const text = value.trim();
  if (opts.required && text.length < 1) return { why: `${field} is required${hint}` };
  if (text.length > opts.max) return { why: `${field} is at most ${opts.max} characters` };
  if (!opts.pattern.test(text))
    return {
      why: field === 'by' ? 'by must be printable characters on one line' : `${field} must be printable text`,
    };
  return { value: text === '' ? undefined : text };
}

/**
 * Parses a payload by the schemas above. The answer never repeats the input: a refusal names the
 * field and the rule, and `who` is the sender's name only when that name itself is valid.
 *
 * Hand-written rather than `schema.safeParse`, and kept equal to the schemas by a property test
 * (test/unit/messages.test.ts): zod builds an Error object for every refused payload, and a flood
 * of thousands of refused signals in one workflow activation, each allocating an Error, crashes the
 * Temporal TypeScript worker thread ("async hook stack has become corrupted"). No Error is created
 * on this path.
 */
export function parseMessage(kind: MessageKind, payload: unknown): Parsed {
  const input = payload ?? {};
  if (typeof input !== 'object' || Array.isArray(input))
    return { ok: false, who: '(invalid sender)', why: `${kind} needs an object like {"by": "<user>"}` };
  const o = input as Record<string, unknown>;
  const get = (key: string) => (Object.hasOwn(o, key) ? o[key] : undefined);
  const by = checkText(get('by'), 'by', {
    hint: 'the name of the user sending it',
    max: MESSAGE_LIMITS.by,
    pattern: PRINTABLE_LINE,
    required: true,
  });
  if ('why' in by) return { ok: false, who: '(invalid sender)', why: by.why };
  const note = NOTE[kind];
  const text = checkText(get(note.field), note.field, {
    max: MESSAGE_LIMITS.text,
    pattern: PRINTABLE_TEXT,
    required: note.required,
  });
  if ('why' in text) return { ok: false, who: by.value!, why: text.why };
  return { ok: true, value: { by: by.value!, note: text.value } };
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
