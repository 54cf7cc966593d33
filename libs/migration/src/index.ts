export * from './phase.js';
export * from './policy.js';
export * from './errors.js';
