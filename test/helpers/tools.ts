/** Locating the tools the tests need (installed by scripts/lib.sh) and free ports. */
import { existsSync } from 'node:fs';
import { homedir } from 'node:os';
import { join } from 'node:path';

export function temporalCliPath(): string {
  const fromEnv = process.env.TEMPORAL_CLI_PATH;
  if (fromEnv) return fromEnv;
  const cache =
    process.env.PROMOTE_CACHE ?? join(process.env.XDG_CACHE_HOME ?? join(homedir(), '.cache'), 'promote');
  const cached = join(cache, 'temporal-cli', 'v1.5.1', 'temporal');
  if (existsSync(cached)) return cached;
  throw new Error(
    'Temporal CLI not found: run the tests with `npm test` (it installs it) or set TEMPORAL_CLI_PATH',
  );
}

export { freePort } from '../../src/common/net';
