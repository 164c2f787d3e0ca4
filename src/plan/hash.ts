/**
 * The plan's identity: SHA-256 over canonical JSON. Pure (no Node built-ins), so the workflow can
 * check the hash it was given against the plan it was given. @noble/hashes is a small, audited,
 * dependency-free implementation that runs in Temporal's workflow sandbox, where node:crypto is not
 * available.
 */
import { sha256 } from '@noble/hashes/sha2';
import { bytesToHex, utf8ToBytes } from '@noble/hashes/utils';

/** JSON with object keys sorted, so equal plans hash equally whatever their key order. */
export function canonicalJson(value: unknown): string {
  if (Array.isArray(value)) return `[${value.map(canonicalJson).join(',')}]`;
  if (value && typeof value === 'object') {
    const entries = Object.entries(value as Record<string, unknown>)
      .filter(([, v]) => v !== undefined)
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, v]) => `${JSON.stringify(k)}:${canonicalJson(v)}`).join(',')}}`;
  }
  return JSON.stringify(value);
}

/**
 * Top-level plan fields added after promotions were already running, whose default changes
 * nothing: left out of the hash while they hold their default (an empty list), so a plan that does
 * not use them keeps the hash it had, and running promotions replay on the new build.
 */
const LATER_FIELDS = ['slices'];

/** `sha256:<hex>` of the plan with defaults applied: the identity pinned to a promotion. */
export function hashPlan(plan: unknown): string {
  let hashed = plan;
  if (plan && typeof plan === 'object' && !Array.isArray(plan)) {
    const p = plan as Record<string, unknown>;
    hashed = Object.fromEntries(
      Object.entries(p).filter(
        ([k, v]) => !(LATER_FIELDS.includes(k) && (v === undefined || (Array.isArray(v) && v.length === 0))),
      ),
    );
  }
  return `sha256:${bytesToHex(sha256(utf8ToBytes(canonicalJson(hashed))))}`;
}
