import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Connection } from '@temporalio/client';
import { startDevServer, stopProcess } from '../../src/dev/temporal';
import { SEARCH_ATTRIBUTES } from '../../src/workflows/search';
import { freePort, temporalCliPath } from '../helpers/tools';

async function customAttributes(address: string): Promise<string[]> {
  const connection = await Connection.connect({ address });
  try {
    const response = await connection.operatorService.listSearchAttributes({ namespace: 'default' });
    return Object.keys(response.customAttributes ?? {}).sort();
  } finally {
    await connection.close();
  }
}

test('the dev stack registers the promotion search attributes on an existing database that lacks them', async () => {
  const dbFile = join(mkdtempSync(join(tmpdir(), 'promote-db-')), 'temporal.db');
  const expected = SEARCH_ATTRIBUTES.map((sa) => sa.name).sort();

  // A database created by a plain dev server, without the promotion attributes.
  const port = await freePort();
  const plain = spawn(
    temporalCliPath(),
    [
      'server',
      'start-dev',
      '--headless',
      '--ip',
      '127.0.0.1',
      '--port',
      String(port),
      '--db-filename',
      dbFile,
    ],
    { stdio: 'ignore' },
  );
  let before: string[] = [];
  for (let i = 0; i < 120 && before.length === 0; i++) {
    before = await customAttributes(`127.0.0.1:${port}`).catch(() => []);
    if (before.length === 0) await new Promise((r) => setTimeout(r, 250));
  }
  expect(before).not.toEqual(expect.arrayContaining(expected));
  await stopProcess(plain);

  // Restarted through the dev-stack code on the same file: the attributes are there.
  const server = await startDevServer({ cliPath: temporalCliPath(), port: await freePort(), dbFile });
  try {
    expect(await customAttributes(server.address)).toEqual(expect.arrayContaining(expected));
  } finally {
    await server.stop();
  }
  // And they persist in the file: a third start finds them without adding anything.
  const again = await startDevServer({ cliPath: temporalCliPath(), port: await freePort(), dbFile });
  try {
    expect(await customAttributes(again.address)).toEqual(expect.arrayContaining(expected));
  } finally {
    await again.stop();
  }
});
