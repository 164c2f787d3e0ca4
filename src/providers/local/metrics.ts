/** Live measurements from the gateway's own prediction log (guardrails, shadow pairs, delayed labels). */
import type { ScorePair } from '../../analysis/shadow';
import { labelMeasurement } from '../../analysis/labels';
import type { Measurement } from '../../analysis/types';
import type { LabelledRow } from '../../serving/gateway/prediction-log';
import type { MetricsSource, WindowQuery } from '../types';
import type { GatewayClient } from './gateway-client';

const enc = encodeURIComponent;
const span = (q: { fromMs: number; toMs: number }) => `from=${Math.floor(q.fromMs)}&to=${Math.ceil(q.toMs)}`;

export class GatewayMetrics implements MetricsSource {
  constructor(private readonly gateway: GatewayClient) {}

  measure(q: WindowQuery & { metric: string }): Promise<Measurement> {
    return this.gateway.admin<Measurement>(
      'GET',
      `measure/${enc(q.model)}/${enc(q.version)}?metric=${enc(q.metric)}&${span(q)}`,
    );
  }

  shadowPairs(q: {
    model: string;
    champion: string;
    candidate: string;
    fromMs: number;
    toMs: number;
  }): Promise<ScorePair[]> {
    return this.gateway.admin<ScorePair[]>(
      'GET',
      `pairs/${enc(q.model)}?champion=${enc(q.champion)}&candidate=${enc(q.candidate)}&${span(q)}`,
    );
  }

  async labelMetric(q: WindowQuery & { metric: string }): Promise<Measurement> {
    const rows = await this.gateway.admin<LabelledRow[]>(
      'GET',
      `labelled/${enc(q.model)}/${enc(q.version)}?${span(q)}`,
    );
    return labelMeasurement(rows, q);
  }
}
