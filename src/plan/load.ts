/** Reading plan files (YAML or JSON), hashing plans, and exporting the JSON Schema. */
import { readFileSync } from 'node:fs';
import { parseDocument } from 'yaml';
import { z } from 'zod';
import { PlanError } from '../common/errors';
import { planSchema, type Plan } from './schema';
import { parsePlan } from './validate';

export { canonicalJson, hashPlan } from './hash';

/** Parses YAML (JSON is YAML) text; syntax errors become PlanError issues with line and column. */
export function parsePlanText(text: string, source: string): Plan {
  const document = parseDocument(text, { prettyErrors: true, uniqueKeys: true });
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
  return parsePlan(document.toJS(), source);
}

/** Reads and validates a plan file; throws PlanError for an unreadable or invalid file. */
export function loadPlanFile(file: string): Plan {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
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
