/** Live counts and rows from the gateway's own prediction log (guardrails, shadow pairs, delayed labels). */
import type { LabelledPrediction } from '../../analysis/labels';
import type { ScorePair } from '../../analysis/shadow';
import type { WindowCounts } from '../../analysis/types';
import {
  MAX_LABELLED_ROWS,
  type MetricsSource,
  type SliceValue,
  type SliceValuesQuery,
  type WindowQuery,
} from '../types';
import type { GatewayClient } from './gateway-client';

const enc = encodeURIComponent;
const span = (q: { fromMs: number; toMs: number }) => `from=${Math.floor(q.fromMs)}&to=${Math.ceil(q.toMs)}`;
const slice = (q: WindowQuery) => (q.slice ? `&slice=${enc(q.slice.key)}&value=${enc(q.slice.value)}` : '');

export class GatewayMetrics implements MetricsSource {
  constructor(private readonly gateway: GatewayClient) {}

  /** The gateway's measure endpoint answers the window's counts (checked by the caller). */
  counts(q: WindowQuery): Promise<WindowCounts> {
    return this.gateway.admin<WindowCounts>(
      'GET',
      `measure/${enc(q.model)}/${enc(q.version)}?metric=error_rate&${span(q)}${slice(q)}`,
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

  labelled(q: WindowQuery): Promise<LabelledPrediction[]> {
    return this.gateway.admin<LabelledPrediction[]>(
      'GET',
      `labelled/${enc(q.model)}/${enc(q.version)}?${span(q)}&limit=${MAX_LABELLED_ROWS}${slice(q)}`,
    );
  }

  sliceValues(q: SliceValuesQuery): Promise<SliceValue[]> {
    return this.gateway.admin<SliceValue[]>(
      'GET',
      `slices/${enc(q.model)}?key=${enc(q.key)}&${span(q)}&limit=${q.limit}`,
    );
  }
}
