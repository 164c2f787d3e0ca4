export * from './types';
export * from './metrics';
export * from './stats';
export * from './guardrail';
export * from './gate';
export * from './shadow';
export * from './labels';
export * from './policy';
