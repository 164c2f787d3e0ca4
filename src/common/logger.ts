/**
 * The process logger: pino, structured JSON, level from LOG_LEVEL (default info). JSON goes to
 * stderr, or to the file named by PROMOTE_LOG_FILE (human-facing commands such as `dev up` and
 * `demo` set it, so their terminal shows human lines only).
 */
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string, file = process.env.PROMOTE_LOG_FILE): Logger {
  const destination = file
    ? pino.destination({ dest: file, mkdir: true, append: true })
    : pino.destination(2);
  return pino({ name, level: process.env.LOG_LEVEL ?? 'info' }, destination);
}
