/**
 * @vmm/proto/nest: the NestJS side of the contracts, for the two Nest apps only (it imports
 * @nestjs/microservices; the CLI and tools import '@vmm/proto', which does not).
 *
 * A gRPC controller `implements` its service's generated `…Controller` interface and applies the
 * generated `@…ControllerMethods()` decorator, which binds every method of the interface to its rpc,
 * so that a method renamed or dropped in the .proto fails to compile. The message types are the ones
 * of '@vmm/proto' (both outputs come from the same options, see buf.gen.yaml).
 */
import { status, type sendUnaryData, type ServerDuplexStream, type ServerReadableStream } from '@grpc/grpc-js';
import { RpcException } from '@nestjs/microservices';
import type { Observable } from 'rxjs';
import type { RichError } from './rich-error.js';

export {
  CLUSTER_SERVICE_NAME,
  ClusterServiceControllerMethods,
  type ClusterServiceController,
} from './gen-nest/cluster/v1/cluster.js';
export {
  AGENT_SERVICE_NAME,
  AgentServiceControllerMethods,
  REGISTRY_SERVICE_NAME,
  type AgentServiceController,
  type RegistryServiceController,
} from './gen-nest/agent/v1/agent.js';

type StreamRequestOf<M> = M extends (request: Observable<infer Req>) => unknown ? Req : never;
type StreamResponseOf<M> = M extends (request: never) => infer R ? Exclude<R, Promise<unknown> | Observable<unknown>> : never;
/** The message type of a bidi method's response stream (never for a client-streaming method). */
type BidiResponseOf<M> = M extends (request: never) => infer R ? (R extends Observable<infer Res> ? Res : never) : never;

/** A raw call of one streaming method: the duplex stream of a bidi method, or a readable stream and its callback. */
type RawStreamCall<M> = [BidiResponseOf<M>] extends [never]
  ? (call: ServerReadableStream<StreamRequestOf<M>, StreamResponseOf<M>>, callback: sendUnaryData<StreamResponseOf<M>>) => void
  : (call: ServerDuplexStream<StreamRequestOf<M>, BidiResponseOf<M>>) => void;

/**
 * A controller interface whose client-streaming or bidi methods `K` are served with @GrpcStreamCall (the raw
 * grpc-js call, which can be paused: backpressure) instead of the Observable the generated interface
 * expects (@GrpcStreamMethod has none). Such a controller binds its methods with @GrpcMethod(SERVICE)
 * and @GrpcStreamCall(SERVICE), whose rpc is the method's own name, capitalized, and not with the
 * generated decorator, which would bind `K` as an Observable stream.
 */
export type WithRawStreamCalls<C, K extends keyof C> = Omit<C, K> & {
  [P in K]: RawStreamCall<C[P]>;
};

/**
 * An RpcException that carries a gRPC status code (Nest's way of answering with a status directly) as
 * the rich error it is answered with, its reason the status name (`ABORTED`); undefined for any other
 * value. Both apps' exception filters pass such exceptions through.
 */
export function richErrorOfRpcException(exception: unknown, domain: string): RichError | undefined {
  if (!(exception instanceof RpcException)) return undefined;
  const inner = exception.getError() as { code?: unknown; message?: unknown } | string;
  if (typeof inner !== 'object' || inner === null || typeof inner.code !== 'number') return undefined;
  const code = inner.code as status;
  return { code, message: String(inner.message ?? ''), reason: status[code] ?? 'UNKNOWN', domain };
}
