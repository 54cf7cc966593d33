/**
 * A request that is not a valid protobuf of its type (truncated, a length beyond the buffer, a wrong
 * wire type) makes grpc-js answer INTERNAL, as if the server had failed. It is the client's fault:
 * INVALID_ARGUMENT (API.md). Both servers wrap the deserializers of the package they load so that
 * decoding never throws but yields a marker, and this interceptor answers the marker before any
 * handler sees it.
 */
import { Metadata, ResponderBuilder, ServerInterceptingCall, ServerListenerBuilder, status, type ServerInterceptor } from '@grpc/grpc-js';

const MALFORMED = Symbol('malformed request');

interface Malformed {
  [MALFORMED]: string;
}

function isMalformed(message: unknown): message is Malformed {
  return typeof message === 'object' && message !== null && MALFORMED in message;
}

type MethodDefinition = { path?: string; requestDeserialize?: (buffer: Buffer) => unknown };

/** Wraps every method's request deserializer in a proto-loader package definition (in place). */
export function tolerateMalformedRequests(packageDefinition: unknown): void {
  for (const definition of Object.values(packageDefinition as Record<string, Record<string, MethodDefinition>>)) {
    if (typeof definition !== 'object' || definition === null) continue;
    for (const method of Object.values(definition)) {
      if (typeof method !== 'object' || method === null || typeof method.path !== 'string' || typeof method.requestDeserialize !== 'function') continue;
      const decode = method.requestDeserialize;
      method.requestDeserialize = (buffer: Buffer) => {
        try {
          return decode(buffer);
        } catch (err) {
          return { [MALFORMED]: err instanceof Error ? err.message : String(err) } satisfies Malformed;
        }
      };
    }
  }
}

export const malformedRequestInterceptor: ServerInterceptor = (descriptor, call) => {
  const listener = new ServerListenerBuilder()
    .withOnReceiveMessage((message, next) => {
      if (isMalformed(message)) {
        call.sendStatus({ code: status.INVALID_ARGUMENT, details: `${descriptor.path}: the request is not a valid protobuf message (${message[MALFORMED].slice(0, 200)})`, metadata: new Metadata() });
        return;
      }
      next(message);
    })
    .build();
  return new ServerInterceptingCall(call, new ResponderBuilder().withStart((next) => next(listener)).build());
};
