/**
 * The data connection's mutual TLS for one migration (docs/design.md, Security): this node's own
 * certificate, and the one peer node it expects (the source for a listener, the target for a sender),
 * named by the controller in PrepareIncoming / StartOutgoing. Undefined on an insecure plane.
 */
import type { DataPlaneTls } from '@vmm/migration';
import { identityOf, type AgentPlane } from '@vmm/tls';

export function dataPlaneTls(plane: AgentPlane, expectedPeerNodeId: string): DataPlaneTls | undefined {
  if (plane.insecure) return undefined;
  return {
    ...plane.material,
    // npm run certs names a node's certificate CN=<node id>.
    peerSubject: `CN=${expectedPeerNodeId}`,
    checkPeer: (cert) => {
      const identity = identityOf(cert);
      if (identity?.role !== 'node') return 'its certificate names no node of the cluster';
      // The controller names the peer in every PrepareIncoming / StartOutgoing: none named, none accepted.
      if (expectedPeerNodeId === '') return 'the controller named no peer node for this migration';
      if (identity.nodeId !== expectedPeerNodeId) return `it is node ${identity.nodeId}, not node ${expectedPeerNodeId}`;
      return undefined;
    },
  };
}
