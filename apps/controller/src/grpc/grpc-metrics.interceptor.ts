/**
 * A grpc-js server interceptor: every RPC the controller handles is counted by method and status code
 * (vmm_grpc_server_handled_total), timed (vmm_grpc_server_handling_seconds), and logged as one access
 * line (method, status, latency, peer, request id). At the transport, so that calls refused by a guard or
 * a filter are counted too.
 */
import { ResponderBuilder, ServerInterceptingCall, status as Status, type ServerInterceptor } from '@grpc/grpc-js';
import { Counter, Histogram, type Registry } from 'prom-client';
import { logAccess } from '@vmm/logging';
import type { Logger } from '../common/logger.js';

const CODE_NAMES = new Map(Object.entries(Status).filter(([, v]) => typeof v === 'number').map(([k, v]) => [v as number, k]));

export function grpcMetricsInterceptor(registry: Registry, logger: Logger): ServerInterceptor {
  const handled = new Counter({ name: 'vmm_grpc_server_handled_total', help: 'RPCs completed, by method and status code.', labelNames: ['method', 'code'], registers: [registry] });
  const seconds = new Histogram({
    name: 'vmm_grpc_server_handling_seconds', help: 'RPC latency until its status, by method.', labelNames: ['method'], registers: [registry],
    buckets: [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 60],
  });
  return (descriptor, call) => {
    const startedAt = process.hrtime.bigint();
    const method = descriptor.path;
    let requestId = '';
    const responder = new ResponderBuilder()
      .withStart((next) => {
        next({ onReceiveMetadata: (metadata, nextMetadata) => {
          const id = metadata.get('x-request-id')[0];
          if (id !== undefined) requestId = String(id);
          nextMetadata(metadata);
        } });
      })
      .withSendStatus((st, next) => {
        const latencySeconds = Number(process.hrtime.bigint() - startedAt) / 1e9;
        const code = CODE_NAMES.get(st.code) ?? String(st.code);
        handled.inc({ method, code });
        seconds.observe({ method }, latencySeconds);
        logAccess(logger, { method, status: code, latencyMs: latencySeconds * 1000, peer: call.getPeer(), requestId });
        next(st);
      })
      .build();
    return new ServerInterceptingCall(call, responder);
  };
}
