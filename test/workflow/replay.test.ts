import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { DeterminismViolationError } from '@temporalio/workflow';
import { Worker } from '@temporalio/worker';
import { installQuietRuntime } from '../helpers/stack';

installQuietRuntime();

// Histories recorded by test/tools/record-histories.ts. A workflow change that would break running
// promotions (a different command sequence on replay) fails here.
const dir = join(__dirname, '../histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

interface JsonEvent {
  eventType: string;
  activityTaskScheduledEventAttributes?: { activityType?: { name?: string } };
}

const load = (file: string) => JSON.parse(readFileSync(join(dir, file), 'utf8')) as { events: JsonEvent[] };

/**
 * Event ids renumbered from 1 after events were removed, with every reference to an event id
 * (`scheduledEventId`, `startedEventId`, ...) following, so the history stays well-formed.
 */
function renumber(events: JsonEvent[]): JsonEvent[] {
  const ids = new Map(events.map((e, i) => [String((e as { eventId?: unknown }).eventId), String(i + 1)]));
  const remap = (value: unknown, key = ''): unknown => {
    if (Array.isArray(value)) return value.map((v) => remap(v));
    if (value && typeof value === 'object')
      return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, remap(v, k)]));
    if (/EventId$/.test(key) && ids.has(String(value))) return ids.get(String(value));
    return value;
  };
  return events.map((e, i) => ({ ...(remap(e) as JsonEvent), eventId: String(i + 1) }));
}

const replay = (json: unknown, id: string) =>
  Worker.runReplayHistory(
    { workflowBundle: { codePath: process.env.PROMOTE_TEST_BUNDLE! } },
    historyFromJSON(json),
    id,
  );

test('committed histories exist', () => {
  expect(files.sort()).toEqual(['aborted-while-paused.json', 'approved.json', 'guardrail-rollback.json']);
});

test.each(files)('replays %s without nondeterminism', async (file) => {
  await expect(replay(load(file), file.replace('.json', ''))).resolves.toBeUndefined();
});

// Negative controls: the replay check above must be able to fail. Each edit makes the recorded
// commands differ from what the current workflow code issues.
describe.each(files)('an edited %s fails to replay', (file) => {
  const scheduled = (events: JsonEvent[]) =>
    events.filter((e) => e.eventType === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED');

  test('an activity renamed in its scheduled event', async () => {
    const json = load(file);
    const first = scheduled(json.events)[0];
    expect(first?.activityTaskScheduledEventAttributes?.activityType?.name).toEqual(expect.any(String));
    first!.activityTaskScheduledEventAttributes!.activityType!.name = 'notAnActivityOfThisWorkflow';
    await expect(replay(json, `${file}-renamed`)).rejects.toThrow(DeterminismViolationError);
  });

  test('two scheduled activities swapped', async () => {
    const json = load(file);
    const [a, b] = scheduled(json.events)
      .map((e) => e.activityTaskScheduledEventAttributes!.activityType!)
      .filter((t, i, all) => i === 0 || t.name !== all[0]!.name);
    expect(a?.name).toEqual(expect.any(String));
    expect(b?.name).not.toBe(a!.name);
    [a!.name, b!.name] = [b!.name, a!.name];
    await expect(replay(json, `${file}-swapped`)).rejects.toThrow(DeterminismViolationError);
  });

  test('the first activity dropped (its scheduled, started and completed events)', async () => {
    const json = load(file);
    const index = json.events.findIndex((e) => e.eventType === 'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED');
    expect(json.events.slice(index, index + 3).map((e) => e.eventType)).toEqual([
      'EVENT_TYPE_ACTIVITY_TASK_SCHEDULED',
      'EVENT_TYPE_ACTIVITY_TASK_STARTED',
      'EVENT_TYPE_ACTIVITY_TASK_COMPLETED',
    ]);
    json.events = renumber(json.events.filter((_, i) => i < index || i > index + 2));
    await expect(replay(json, `${file}-dropped`)).rejects.toThrow(DeterminismViolationError);
  });
});
