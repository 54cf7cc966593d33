import {
  credentials,
  InterceptingCall,
  Metadata,
  type CallOptions,
  type ClientUnaryCall,
  type Interceptor,
  type ServiceError,
} from '@grpc/grpc-js';
import { cluster } from '@vmm/proto';

/** Metadata carrying `authorization: Bearer <token>`, as docs/api.md's authentication section requires. */
export function bearerMetadata(token: string): Metadata {
  const md = new Metadata();
  md.set('authorization', `Bearer ${token}`);
  return md;
}

/** A client interceptor that adds the bearer token to every call (unary and streaming). */
export function bearerInterceptor(token: string): Interceptor {
  return (options, nextCall) =>
    new InterceptingCall(nextCall(options), {
      start(metadata, listener, next) {
        if (!metadata.get('authorization').length) metadata.set('authorization', `Bearer ${token}`);
        next(metadata, listener);
      },
    });
}

/** A ClusterService client for `address`, sending `token` on every call when given. */
export function createClusterClient(address: string, token?: string): cluster.ClusterServiceClient {
  return new cluster.ClusterServiceClient(address, credentials.createInsecure(), {
    interceptors: token ? [bearerInterceptor(token)] : [],
  });
}

export interface UnaryCallOptions {
  metadata?: Metadata;
  /** Deadline from now; default 10 s so a hung server fails the caller instead of hanging it. */
  timeoutMs?: number;
}

type UnaryCallback<Res> = (error: ServiceError | null, response: Res) => void;
type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: UnaryCallback<Res>,
) => ClientUnaryCall;

/** The unary methods of a generated client, as functions returning promises. */
export type PromiseClient<C> = {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- matches any request/response type
  [K in keyof C as C[K] extends UnaryMethod<any, any> ? K : never]: C[K] extends UnaryMethod<infer Req, infer Res>
    ? (request: Req, options?: UnaryCallOptions) => Promise<Res>
    : never;
};

/** Calls one unary method and resolves with its response or rejects with its ServiceError. */
export function unary<Req, Res>(
  method: UnaryMethod<Req, Res>,
  thisArg: object,
  request: Req,
  options: UnaryCallOptions = {},
): Promise<Res> {
  return new Promise<Res>((resolve, reject) => {
    method.call(
      thisArg,
      request,
      options.metadata ?? new Metadata(),
      { deadline: Date.now() + (options.timeoutMs ?? 10_000) },
      (err, res) => (err ? reject(err) : resolve(res)),
    );
  });
}

/**
 * Wraps the unary methods named by a generated service definition (for example
 * `cluster.ClusterServiceService`) so that `await api.createVm({...})` works.
 */
export function promiseClient<C extends object>(
  client: C,
  service: Record<string, { requestStream: boolean; responseStream: boolean }>,
  messages: Record<string, unknown> = {},
): PromiseClient<C> {
  const out: Record<string, unknown> = {};
  for (const [name, def] of Object.entries(service)) {
    if (def.requestStream || def.responseStream) continue;
    const method = (client as Record<string, UnaryMethod<unknown, unknown>>)[name]!;
    // ts-proto's encoder writes an enum field left undefined as -1: fill the request's defaults first.
    const type = messages[`${name[0]!.toUpperCase()}${name.slice(1)}Request`] as { fromPartial?: (o: unknown) => unknown } | undefined;
    const complete = type?.fromPartial ? (r: unknown) => type.fromPartial!(r) : (r: unknown) => r;
    out[name] = (request: unknown, options?: UnaryCallOptions) => unary(method, client, complete(request), options);
  }
  return out as PromiseClient<C>;
}

/** A ClusterService client with promise-returning unary methods; `close()` closes its channel. */
export function clusterApi(address: string, token?: string) {
  const client = createClusterClient(address, token);
  return Object.assign(promiseClient(client, cluster.ClusterServiceService, cluster as unknown as Record<string, unknown>), {
    client,
    close: () => client.close(),
  });
}
export type ClusterApi = ReturnType<typeof clusterApi>;
