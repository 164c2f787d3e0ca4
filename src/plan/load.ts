/** Reading plan files (YAML or JSON), hashing plans, and exporting the JSON Schema. */
import { readFileSync, statSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { PlanError } from '../common/errors';
import { planSchema, type Plan } from './schema';
import { parsePlan } from './validate';

export { canonicalJson, hashPlan } from './hash';

/** Parses YAML (JSON is YAML) text; syntax errors become PlanError issues with line and column. */
export function parsePlanText(text: string, source: string): Plan {
  // logLevel 'error': the yaml library would otherwise print warnings (e.g. collection keys) on
  // stderr itself; such keys surface as unknown fields instead.
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true, logLevel: 'error' });
  if (document.errors.length > 0) {
    throw new PlanError(
      source,
      document.errors.map((e) => ({
        path: e.linePos ? `line ${e.linePos[0].line}, column ${e.linePos[0].col}` : '(document)',
        // The position is in the path; the pretty message repeats it after the text.
        message: (e.message.split('\n')[0] ?? e.message).replace(/ at line \d+, column \d+:?$/, ''),
      })),
    );
  }
  let value: unknown;
  try {
    // Aliases are resolved here: an undefined anchor or an alias bomb (maxAliasCount) throws.
    value = document.toJS({ maxAliasCount: 100 });
  } catch (err) {
    throw new PlanError(source, [
      { path: '(document)', message: err instanceof Error ? err.message.split('\n')[0]! : String(err) },
    ]);
  }
  return parsePlan(value, source);
}

/** Plan files larger than this are refused before parsing (a plan is a few KB). */
export const MAX_PLAN_BYTES = 1 << 20;

/** Reads and validates a plan file; throws PlanError for an unreadable or invalid file. */
export function loadPlanFile(file: string): Plan {
  let text: string;
  try {
    const size = statSync(file).size;
    if (size > MAX_PLAN_BYTES)
      throw new PlanError(file, [
        { path: '(file)', message: `${size} bytes; a plan file is at most ${MAX_PLAN_BYTES}` },
      ]);
    text = readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof PlanError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    throw new PlanError(file, [
      { path: '(file)', message: code === 'ENOENT' ? 'no such file' : `cannot read: ${code ?? String(err)}` },
    ]);
  }
  return parsePlanText(text, file);
}

/** The plan's JSON Schema (draft 2020-12), describing the input form (defaults optional). */
export function planJsonSchema(): Record<string, unknown> {
  return z.toJSONSchema(planSchema, { io: 'input', target: 'draft-2020-12' });
}
