/**
 * The gRPC credentials a client of a local cluster needs, from its certificates directory: the
 * operator's for health and reflection on any server, the controller's for a test acting as the
 * controller towards an agent, a node's for one acting as that node, and the CA alone for a
 * ClusterService over TLS. Plaintext for all of them when the agent plane is insecure.
 */
import { credentials, type ChannelCredentials } from '@grpc/grpc-js';
import { mutualTlsChannelCredentials, readTlsMaterial } from '@vmm/tls';
import { readFileSync } from 'node:fs';
import { certFiles, type SecuritySettings } from './cluster-env.js';

export interface ClusterCredentials {
  /** A client certificate of the cluster: `operator`, `controller` or a node id. */
  as(owner: string): ChannelCredentials;
  /** For ClusterService: TLS verified against ca.pem with --api-tls, else plaintext. */
  api(): ChannelCredentials;
}

export function clusterCredentials(security: SecuritySettings): ClusterCredentials {
  return {
    as: (owner) => (security.insecure ? credentials.createInsecure() : mutualTlsChannelCredentials(readTlsMaterial(certFiles(security.certsDir, owner)))),
    api: () => (security.apiTls ? credentials.createSsl(readFileSync(certFiles(security.certsDir, 'controller').ca)) : credentials.createInsecure()),
  };
}
