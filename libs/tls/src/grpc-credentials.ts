/**
 * gRPC credentials of the agent plane: servers demand a client certificate from the cluster CA (a
 * client without one cannot finish the handshake), clients present theirs and verify the server's
 * against the CA and the address they dialled.
 */
import { checkServerIdentity as checkServerName, type PeerCertificate } from 'node:tls';
import { credentials, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { describeIdentity, identityOf, type Identity } from './identity.js';
import type { TlsMaterial } from './tls-files.js';

export function mutualTlsServerCredentials(material: TlsMaterial): ServerCredentials {
  return ServerCredentials.createSsl(material.ca, [{ cert_chain: material.cert, private_key: material.key }], true);
}

/** TLS with a server certificate only (ClusterService with --api-tls): clients bring tokens, not certificates. */
export function serverTlsCredentials(material: TlsMaterial): ServerCredentials {
  return ServerCredentials.createSsl(material.ca, [{ cert_chain: material.cert, private_key: material.key }], false);
}

/**
 * @param expectServer who the server must be (its URI SAN), on top of the CA and the dialled name: every
 * certificate of the cluster chains to the CA, so without it any node could answer as the controller.
 */
export function mutualTlsChannelCredentials(material: TlsMaterial, expectServer?: Identity): ChannelCredentials {
  if (!expectServer) return credentials.createSsl(material.ca, material.key, material.cert);
  return credentials.createSsl(material.ca, material.key, material.cert, {
    checkServerIdentity: (hostname: string, cert: PeerCertificate) => {
      const nameError = checkServerName(hostname, cert);
      if (nameError) return nameError;
      const found = identityOf(cert);
      if (JSON.stringify(found) !== JSON.stringify(expectServer)) {
        return new Error(`the server at ${hostname} is ${describeIdentity(found)}, not ${describeIdentity(expectServer)}`);
      }
      return undefined;
    },
  });
}
