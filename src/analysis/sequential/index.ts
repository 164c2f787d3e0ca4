export * from './mixture';
export * from './bernoulli';
export * from './ratio';
export * from './srm';
export * from './quantile';
export * from './difference';
