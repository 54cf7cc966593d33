/**
 * The credentials a test needs to call a server of one of its clusters directly, by address: the
 * controller's certificate towards an agent's AgentService, the operator's for health and reflection.
 * startTestCluster records each cluster's servers here and forgets them at stop, so that helpers that
 * take an address (agentVms, listServicesByReflection) reach TLS and plaintext clusters alike.
 */
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import type { LocalCluster } from '@vmm/local-cluster/cluster';

const clusters = new Set<LocalCluster>();

export function rememberCluster(c: LocalCluster): void {
  clusters.add(c);
}

export function forgetCluster(c: LocalCluster): void {
  clusters.delete(c);
}

function clusterServing(address: string): LocalCluster | undefined {
  for (const c of clusters) {
    if (c.controllerAddress === address || c.agentPlaneAddress === address || c.agents.some((a) => a.address === address)) return c;
  }
  return undefined;
}

/** As the controller (AgentService accepts no one else). */
export function controllerCredentialsFor(address: string): ChannelCredentials {
  return clusterServing(address)?.credentials.as('controller') ?? credentials.createInsecure();
}

/** As the operator: health and reflection on an agent or the agent-plane port; the API's own on the API port. */
export function operatorCredentialsFor(address: string): ChannelCredentials {
  const c = clusterServing(address);
  if (!c) return credentials.createInsecure();
  return c.controllerAddress === address ? c.credentials.api() : c.credentials.as('operator');
}
