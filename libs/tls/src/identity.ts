/**
 * Who holds a certificate of the cluster CA, read from the URI subject alternative name that
 * `npm run certs` writes (urn:vmm:controller, urn:vmm:operator, urn:vmm:node:<id>). A role lives in
 * a URI rather than in a DNS name so that no host name can be mistaken for it.
 */
import type { PeerCertificate } from 'node:tls';

export type Identity = { role: 'controller' } | { role: 'operator' } | { role: 'node'; nodeId: string };

const URN_PREFIX = 'urn:vmm:';

/** Node ids a certificate may name: the agent's NODE_ID rules. */
export const NODE_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

export function identityUri(identity: Identity): string {
  return identity.role === 'node' ? `${URN_PREFIX}node:${identity.nodeId}` : `${URN_PREFIX}${identity.role}`;
}

export function describeIdentity(identity: Identity | undefined): string {
  if (!identity) return 'a client without a cluster certificate';
  return identity.role === 'node' ? `node ${identity.nodeId}` : `the ${identity.role}`;
}

function parseUri(uri: string): Identity | undefined {
  if (!uri.startsWith(URN_PREFIX)) return undefined;
  const rest = uri.slice(URN_PREFIX.length);
  if (rest === 'controller' || rest === 'operator') return { role: rest };
  if (rest.startsWith('node:')) {
    const nodeId = rest.slice('node:'.length);
    return NODE_ID_PATTERN.test(nodeId) ? { role: 'node', nodeId } : undefined;
  }
  return undefined;
}

/**
 * The identity of a verified peer certificate; undefined when it names none, or more than one (a
 * certificate is made for exactly one holder). Only call this on a certificate the TLS layer verified
 * against the cluster CA: the name proves nothing otherwise.
 */
export function identityOf(cert: Pick<PeerCertificate, 'subjectaltname'> | undefined | null): Identity | undefined {
  const san = cert?.subjectaltname;
  if (typeof san !== 'string' || san === '') return undefined;
  // Node renders the SAN as "DNS:a, IP Address:1.2.3.4, URI:urn:…"; our URIs hold no ", ".
  const found = san
    .split(', ')
    .filter((entry) => entry.startsWith('URI:'))
    .map((entry) => parseUri(entry.slice('URI:'.length)))
    .filter((id): id is Identity => id !== undefined);
  return found.length === 1 ? found[0] : undefined;
}
