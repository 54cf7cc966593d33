/**
 * A grpc-js server interceptor: one access line per RPC the agent handles (method, status, latency,
 * peer, request id), through the adapter both apps share (@vmm/logging logAccess), as the controller's
 * interceptor writes them. At the transport, so that calls a filter refuses are logged too.
 */
import { ResponderBuilder, ServerInterceptingCall, status as Status, type ServerInterceptor } from '@grpc/grpc-js';
import { logAccess, type Logger } from '@vmm/logging';

const CODE_NAMES = new Map(Object.entries(Status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v as number, k]));

export function accessLogInterceptor(logger: Logger): ServerInterceptor {
  return (descriptor, call) => {
    const startedAt = process.hrtime.bigint();
    let requestId = '';
    const responder = new ResponderBuilder()
      .withStart((next) => {
        next({
          onReceiveMetadata: (metadata, nextMetadata) => {
            const id = metadata.get('x-request-id')[0];
            if (id !== undefined) requestId = String(id);
            nextMetadata(metadata);
          },
        });
      })
      .withSendStatus((st, next) => {
        const latencyMs = Number(process.hrtime.bigint() - startedAt) / 1e6;
        logAccess(logger, { method: descriptor.path, status: CODE_NAMES.get(st.code) ?? String(st.code), latencyMs, peer: call.getPeer(), requestId });
        next(st);
      })
      .build();
    return new ServerInterceptingCall(call, responder);
  };
}
