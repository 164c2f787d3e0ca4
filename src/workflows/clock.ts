/**
 * The workflow clock. Inside a workflow, Date.now() is the SDK's replay-safe time (the time of the
 * current workflow task), not the machine clock; this is the one place workflow code reads it.
 */
export function nowMs(): number {
  // eslint-disable-next-line no-restricted-properties -- deterministic inside the workflow sandbox
  return Date.now();
}
