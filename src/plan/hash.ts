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

/** `sha256:<hex>` of the plan with defaults applied: the identity pinned to a promotion. */
export function hashPlan(plan: unknown): string {
  return `sha256:${bytesToHex(sha256(utf8ToBytes(canonicalJson(plan))))}`;
}
