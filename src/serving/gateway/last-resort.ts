/**
 * Last-resort handlers of the gateway process. No request should ever reach them (every request
 * is handled inside error handling); if a bug lets an error through, the gateway logs it, counts
 * it and keeps serving, because a gateway that exits takes the champion's traffic down with it.
 */
import type { EventEmitter } from 'node:events';
import type { Logger } from '../../common/logger';

export function installLastResort(
  proc: EventEmitter,
  logger: Logger,
  count: (kind: 'exception' | 'rejection') => void,
): void {
  proc.on('uncaughtException', (err: unknown) => {
    count('exception');
    logger.error({ err }, 'uncaught exception (a bug): logged, counted, still serving');
  });
  proc.on('unhandledRejection', (reason: unknown) => {
    count('rejection');
    logger.error({ err: reason }, 'unhandled promise rejection (a bug): logged, counted, still serving');
  });
}
