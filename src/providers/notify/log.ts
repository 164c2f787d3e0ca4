/** Notifier that writes one structured log line per event, once per idempotency key. */
import type { Logger } from '../../common/logger';
import type { Notifier, PromotionEvent } from '../types';

export class LogNotifier implements Notifier {
  private readonly seen = new Set<string>();
  readonly events: PromotionEvent[] = [];

  constructor(private readonly logger: Logger) {}

  notify(event: PromotionEvent): Promise<void> {
    if (this.seen.has(event.key)) return Promise.resolve();
    this.seen.add(event.key);
    this.events.push(event);
    this.logger.info(
      { workflowId: event.promotionId, model: event.model, version: event.candidate, event: event.kind },
      event.message,
    );
    return Promise.resolve();
  }
}
