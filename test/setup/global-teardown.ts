import type { DevServer } from '../../src/dev/temporal';

export default async function globalTeardown(): Promise<void> {
  const server = (globalThis as Record<string, unknown>).__PROMOTE_DEV_SERVER__ as DevServer | undefined;
  await server?.stop();
}
