export * from './errors.js';
export * from './ports.js';
export * from './processes.js';
export * from './resp-client.js';
export * from './redis.js';
export * from './health.js';
export * from './grpc-client.js';
export * from './cluster.js';
export { parseClusterArgs, USAGE, UsageError, type ClusterArgs } from './args.js';
