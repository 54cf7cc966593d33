/**
 * Who may call what, decided at the transport (a grpc-js server interceptor) before any handler runs:
 * the caller is the identity of its verified client certificate (identity.ts), and a refusal ends the
 * call with its status and touches nothing. The identity is also handed to handlers as metadata
 * (PEER_NODE_METADATA), after removing whatever a client sent under that name, so that a handler can
 * check that a node acts only as itself.
 */
import { Metadata, ResponderBuilder, ServerInterceptingCall, ServerListenerBuilder, status, type ServerInterceptor } from '@grpc/grpc-js';
import { describeIdentity, identityOf, type Identity } from './identity.js';

/** Set by the interceptor to the node id of a node certificate; never taken from a client. */
export const PEER_NODE_METADATA = 'x-vmm-peer-node';

export interface Caller {
  /** Over TLS at all (a plaintext port serves some services too). */
  tls: boolean;
  identity: Identity | undefined;
}

export interface Refusal {
  code: status.UNAUTHENTICATED | status.PERMISSION_DENIED;
  message: string;
}

/** `/pkg.Service/Method` → undefined (allowed) or the refusal. */
export type CallPolicy = (method: string, caller: Caller) => Refusal | undefined;

export function callerOf(call: { getAuthContext(): { transportSecurityType?: string; sslPeerCertificate?: { subjectaltname?: string } } | null }): Caller {
  const auth = call.getAuthContext();
  const tls = auth?.transportSecurityType === 'ssl';
  return { tls, identity: tls ? identityOf(auth?.sslPeerCertificate) : undefined };
}

/** Services that answer anyone who completed the handshake: generic tools need them. */
export function isOpenService(method: string): boolean {
  return method.startsWith('/grpc.health.v1.') || method.startsWith('/grpc.reflection.');
}

/** The refusal for a caller who is not `wanted` (a role's name, for the message). */
export function requireRole(caller: Caller, allowed: readonly Identity['role'][], wanted: string, method: string): Refusal | undefined {
  if (!caller.tls || caller.identity === undefined) {
    return { code: status.UNAUTHENTICATED, message: `${method} needs mutual TLS with ${wanted}'s certificate from the cluster CA` };
  }
  if (!allowed.includes(caller.identity.role)) {
    return { code: status.PERMISSION_DENIED, message: `${describeIdentity(caller.identity)} may not call ${method}: only ${wanted} may` };
  }
  return undefined;
}

export function authorizingInterceptor(policy: CallPolicy): ServerInterceptor {
  return (descriptor, call) => {
    const caller = callerOf(call);
    const refusal = policy(descriptor.path, caller);
    const listener = new ServerListenerBuilder()
      .withOnReceiveMetadata((metadata, next) => {
        if (refusal) {
          call.sendStatus({ code: refusal.code, details: refusal.message, metadata: new Metadata() });
          return;
        }
        metadata.remove(PEER_NODE_METADATA);
        if (caller.identity?.role === 'node') metadata.set(PEER_NODE_METADATA, caller.identity.nodeId);
        next(metadata);
      })
      .build();
    const responder = new ResponderBuilder().withStart((next) => next(listener)).build();
    return new ServerInterceptingCall(call, responder);
  };
}

/** The node a handler's caller proved to be, or undefined (no node certificate, or an insecure plane). */
export function peerNodeOf(metadata: Pick<Metadata, 'get'> | undefined): string | undefined {
  const value = metadata?.get(PEER_NODE_METADATA)[0];
  return value === undefined ? undefined : String(value);
}
