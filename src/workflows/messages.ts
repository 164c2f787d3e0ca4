/**
 * The promotion workflow's messages. Signals work from `temporal workflow signal` and the Temporal
 * UI; approve and reject are also updates so the CLI learns at once whether a vote counted.
 */
import { defineQuery, defineSignal, defineUpdate } from '@temporalio/workflow';
import type { PromotionStatus } from './types';

export interface ApproveInput {
  by: string;
  comment?: string;
}
export interface RejectInput {
  by: string;
  reason: string;
}
export interface AbortInput {
  by: string;
  reason: string;
}
export interface PauseInput {
  by: string;
  reason?: string;
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
export const resumeSignal = defineSignal<[PauseInput]>('resume');

export const approveUpdate = defineUpdate<MessageResult, [ApproveInput]>('approve');
export const rejectUpdate = defineUpdate<MessageResult, [RejectInput]>('reject');

export const statusQuery = defineQuery<PromotionStatus>('status');
