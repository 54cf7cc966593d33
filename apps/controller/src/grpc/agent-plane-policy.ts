/**
 * Who may call the controller, at the transport (docs/api.md, Security): RegistryService only a node
 * (over the mutual-TLS agent-plane port; which node it may act as is checked by the registry handlers
 * against the certificate), health and reflection anyone, ClusterService whoever its tokens admit
 * (api-token.guard.ts). With an insecure plane the registry is open, as that mode announces.
 */
import { status } from '@grpc/grpc-js';
import { isOpenService, peerNodeOf, requireRole, type AgentPlane, type CallPolicy } from '@vmm/tls';
import type { Metadata } from '@grpc/grpc-js';
import { PermissionDeniedError } from '../errors.js';

export const REGISTRY_METHOD_PREFIX = '/agent.v1.RegistryService/';

export function controllerCallPolicy(plane: AgentPlane): CallPolicy {
  return (method, caller) => {
    if (isOpenService(method)) return undefined;
    if (!method.startsWith(REGISTRY_METHOD_PREFIX)) {
      // A node certificate only ever arrives on the agent-plane port: agents have no business with the API.
      if (caller.identity?.role === 'node') return { code: status.PERMISSION_DENIED, message: `node ${caller.identity.nodeId} may not call ${method}` };
      return undefined;
    }
    if (plane.insecure) return undefined;
    return requireRole(caller, ['node'], 'a node', method);
  };
}

/**
 * Kubernetes' NodeRestriction for our agents: a node registers and reports only as the node its
 * certificate names. Nothing is checked on an insecure plane (there is no certificate to check).
 */
export function assertActsAsItself(plane: AgentPlane, metadata: Pick<Metadata, 'get'> | undefined, nodeId: string): void {
  if (plane.insecure) return;
  const proven = peerNodeOf(metadata);
  if (proven === undefined) throw new PermissionDeniedError('the agent plane needs a node certificate');
  if (proven !== nodeId) {
    throw new PermissionDeniedError(`node ${proven} may act only as itself, not as node ${JSON.stringify(nodeId.slice(0, 64))}`);
  }
}
