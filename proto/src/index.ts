export * from './paths.js';
export * from './loader-options.js';
export * from './grpc-promise.js';
export * from './rich-error.js';
export * as cluster from './gen/cluster/v1/cluster.js';
export * as agent from './gen/agent/v1/agent.js';
export * from './reflection.js';
export * as reflectionV1 from './gen/grpc/reflection/v1/reflection.js';
export { tolerateMalformedRequests, malformedRequestInterceptor } from './malformed-requests.js';
