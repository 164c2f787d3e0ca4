import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { historyFromJSON } from '@temporalio/common/lib/proto-utils';
import { Worker } from '@temporalio/worker';
import { installQuietRuntime } from '../helpers/stack';

installQuietRuntime();

// Histories recorded by test/tools/record-histories.ts. A workflow change that would break running
// promotions (a different command sequence on replay) fails here.
const dir = join(__dirname, '../histories');
const files = readdirSync(dir).filter((f) => f.endsWith('.json'));

test('committed histories exist', () => {
  expect(files.sort()).toEqual(['aborted-while-paused.json', 'approved.json', 'guardrail-rollback.json']);
});

test.each(files)('replays %s without nondeterminism', async (file) => {
  const history = historyFromJSON(JSON.parse(readFileSync(join(dir, file), 'utf8')));
  await expect(
    Worker.runReplayHistory(
      { workflowBundle: { codePath: process.env.PROMOTE_TEST_BUNDLE! } },
      history,
      file.replace('.json', ''),
    ),
  ).resolves.toBeUndefined();
});
