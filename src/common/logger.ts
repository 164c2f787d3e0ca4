/** The process logger: pino, structured JSON to stderr, level from LOG_LEVEL (default info). */
import pino, { type Logger } from 'pino';

export type { Logger };

export function createLogger(name: string): Logger {
  return pino({ name, level: process.env.LOG_LEVEL ?? 'info' }, pino.destination(2));
}
