import type { Server } from '@grpc/grpc-js';
import { Transport, type GrpcOptions } from '@nestjs/microservices';
import { addReflection, AGENT_PROTO, LOADER_OPTIONS, malformedRequestInterceptor, tolerateMalformedRequests } from '@vmm/proto';
import { agentPlaneServerCredentials, authorizingInterceptor, isOpenService, requireRole, type AgentPlane, type CallPolicy } from '@vmm/tls';
import { HealthImplementation } from 'grpc-health-check';
import type { Logger } from '@vmm/logging';
import { accessLogInterceptor } from './access-log.interceptor.js';

export const AGENT_SERVICE_NAME = 'agent.v1.AgentService';
/** Receive limit: what the controller sends an agent is small (a VM spec, a decision); 4 MiB as the controller's. */
const MAX_MESSAGE_BYTES = 4 * 1024 * 1024;

/**
 * Health statuses served: the whole server ('') and the agent service. Both start NOT_SERVING: an
 * agent without a link to the controller cannot be given work (followLink turns them SERVING).
 */
export function createHealth(): HealthImplementation {
  return new HealthImplementation({ '': 'NOT_SERVING', [AGENT_SERVICE_NAME]: 'NOT_SERVING' });
}

/** SERVING while the controller link reports (registered, its stream open), NOT_SERVING otherwise. */
export function followLink(health: HealthImplementation, state: string): void {
  const status = state === 'reporting' ? 'SERVING' : 'NOT_SERVING';
  health.setStatus('', status);
  health.setStatus(AGENT_SERVICE_NAME, status);
}

/**
 * Who may call an agent (docs/api.md, Security): AgentService only the controller, health and
 * reflection anyone holding a certificate of the cluster (the operator's, a node's). Nobody else gets
 * past the handshake.
 */
export const agentCallPolicy: CallPolicy = (method, caller) => {
  if (isOpenService(method)) return undefined;
  return requireRole(caller, ['controller'], 'the controller', method);
};

/**
 * Nest gRPC transport options for the agent: agent.v1 on `url`, plus grpc.health.v1.Health and server
 * reflection on the same server (from buf's descriptors; it lists agent.v1.AgentService and health only).
 * Mutual TLS unless the plane is explicitly insecure.
 */
export function agentGrpcOptions(url: string, health: HealthImplementation, plane: AgentPlane, accessLog?: Logger): GrpcOptions {
  return {
    transport: Transport.GRPC,
    options: {
      package: 'agent.v1',
      protoPath: AGENT_PROTO,
      url,
      credentials: agentPlaneServerCredentials(plane),
      // Nest hands channelOptions to grpc-js's Server as they are: its interceptors option among them.
      // The access log first, so that calls the authorizer refuses get their line too.
      channelOptions: {
        interceptors: [
          ...(accessLog ? [accessLogInterceptor(accessLog)] : []),
          ...(plane.insecure ? [] : [authorizingInterceptor(agentCallPolicy)]),
          malformedRequestInterceptor,
        ],
      } as Record<string, unknown>,
      loader: { ...LOADER_OPTIONS, includeDirs: [...LOADER_OPTIONS.includeDirs] },
      maxReceiveMessageLength: MAX_MESSAGE_BYTES,
      maxSendMessageLength: MAX_MESSAGE_BYTES,
      // Pings on idle connections and open streams: a peer that froze or vanished is noticed in seconds.
      keepalive: { keepaliveTimeMs: 10_000, keepaliveTimeoutMs: 5_000 },
      onLoadPackageDefinition: (pkg: unknown, server: Server) => {
        tolerateMalformedRequests(pkg);
        health.addToServer(server);
        addReflection(server, [AGENT_SERVICE_NAME]);
      },
    },
  };
}
