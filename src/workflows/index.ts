/** The workflow bundle's entry point: every workflow the worker registers. */
export { promotionWorkflow } from './promotion';
export { recoverWorkflow } from './recovery';
