/**
 * Unary calls of generated grpc-js clients as promises: the one wrapper every caller uses (the CLI,
 * the controller's calls to agents, tools and tests), so that deadlines and metadata are passed the
 * same way everywhere.
 *
 *   const vm = await unaryCall(client, 'getVm', { vmId }, { timeoutMs: 5_000 });
 *   const api = promiseClient(client, cluster.ClusterServiceService);  await api.getVm({ vmId });
 *
 * A failed call rejects with grpc-js's ServiceError as it is (its code, details and trailer metadata:
 * readStatusDetails() reads the rich error details from it).
 */
import { Metadata, type CallOptions, type ClientUnaryCall, type ServiceError } from '@grpc/grpc-js';

/** Deadline of a call that names none: a hung server fails the caller instead of hanging it. */
export const DEFAULT_UNARY_TIMEOUT_MS = 10_000;

export interface UnaryCallOptions {
  /** Sent as the call's metadata (e.g. `authorization`, or grpc-js's `waitForReady` option). */
  metadata?: Metadata;
  /** Absolute deadline (epoch ms or a Date); takes precedence over `timeoutMs`. */
  deadline?: number | Date;
  /** Deadline from now, in ms; DEFAULT_UNARY_TIMEOUT_MS when neither this nor `deadline` is given. */
  timeoutMs?: number;
}

/** The shape of a generated unary method (its last, fullest overload). */
type UnaryMethod<Req, Res> = (
  request: Req,
  metadata: Metadata,
  options: Partial<CallOptions>,
  callback: (error: ServiceError | null, response: Res) => void,
) => ClientUnaryCall;

/** The names of a client's unary methods (streaming methods have another shape). */
export type UnaryMethodName<C> = {
  // eslint-disable-next-line @typescript-eslint/no-explicit-any -- matches any request/response type
  [K in keyof C]: C[K] extends UnaryMethod<any, any> ? K : never;
}[keyof C] &
  string;
export type UnaryRequest<M> = M extends UnaryMethod<infer Req, infer _Res> ? Req : never;
export type UnaryResponse<M> = M extends UnaryMethod<infer _Req, infer Res> ? Res : never;

/** Calls `client[method]` with `request`; resolves with its response or rejects with its ServiceError. */
export function unaryCall<C extends object, K extends UnaryMethodName<C>>(
  client: C,
  method: K,
  request: UnaryRequest<C[K]>,
  options: UnaryCallOptions = {},
): Promise<UnaryResponse<C[K]>> {
  const fn = client[method] as unknown as UnaryMethod<UnaryRequest<C[K]>, UnaryResponse<C[K]>>;
  const deadline = options.deadline ?? Date.now() + (options.timeoutMs ?? DEFAULT_UNARY_TIMEOUT_MS);
  return new Promise((resolve, reject) => {
    fn.call(client, request, options.metadata ?? new Metadata(), { deadline }, (error, response) =>
      error ? reject(error) : resolve(response),
    );
  });
}

/**
 * The unary methods of a generated client, as functions returning promises. A request may leave fields
 * out, at any depth: they are sent with their proto defaults.
 */
export type PromiseClient<C> = {
  [K in UnaryMethodName<C>]: (request: DeepPartial<UnaryRequest<C[K]>>, options?: UnaryCallOptions) => Promise<UnaryResponse<C[K]>>;
};

type DeepPartial<T> = T extends readonly unknown[] ? T : T extends object ? { [K in keyof T]?: DeepPartial<T[K]> } : T;

/**
 * Wraps the unary methods a generated service definition names (e.g. `cluster.ClusterServiceService`)
 * so that `await api.createVm({...})` works. `messages` is the generated module of the service's
 * messages (e.g. `cluster`): each request is completed by its `<Method>Request.fromPartial` first
 * (buf's lint holds every service to that naming), because ts-proto's encoder writes an enum left
 * undefined as -1 and throws on an undefined int64. `defaults` is asked for the options of each call
 * (a fresh Metadata each time); a call's own options override them.
 */
export function promiseClient<C extends object>(
  client: C,
  service: Readonly<Record<string, { path: string; requestStream: boolean; responseStream: boolean }>>,
  messages: object,
  defaults: () => UnaryCallOptions = () => ({}),
): PromiseClient<C> {
  const out: Record<string, unknown> = {};
  for (const [name, definition] of Object.entries(service)) {
    if (definition.requestStream || definition.responseStream) continue;
    const typeName = `${definition.path.slice(definition.path.lastIndexOf('/') + 1)}Request`;
    const type = (messages as Record<string, { fromPartial?: (o: object) => unknown } | undefined>)[typeName];
    if (typeof type?.fromPartial !== 'function') throw new Error(`promiseClient: ${typeName} is not among the messages given`);
    out[name] = (request: object, options?: UnaryCallOptions) =>
      unaryCall(client, name as UnaryMethodName<C>, type.fromPartial!(request) as never, { ...defaults(), ...options });
  }
  return out as PromiseClient<C>;
}
