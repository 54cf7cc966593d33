/**
 * gRPC credentials of the agent plane: servers demand a client certificate from the cluster CA (a
 * client without one cannot finish the handshake), clients present theirs and verify the server's
 * against the CA and the address they dialled.
 */
import { credentials, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import type { TlsMaterial } from './tls-files.js';

export function mutualTlsServerCredentials(material: TlsMaterial): ServerCredentials {
  return ServerCredentials.createSsl(material.ca, [{ cert_chain: material.cert, private_key: material.key }], true);
}

/** TLS with a server certificate only (ClusterService with --api-tls): clients bring tokens, not certificates. */
export function serverTlsCredentials(material: TlsMaterial): ServerCredentials {
  return ServerCredentials.createSsl(material.ca, [{ cert_chain: material.cert, private_key: material.key }], false);
}

export function mutualTlsChannelCredentials(material: TlsMaterial): ChannelCredentials {
  return credentials.createSsl(material.ca, material.key, material.cert);
}
