/**
 * The agent plane's security as both apps configure it (TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE,
 * AGENT_PLANE_INSECURE): mutual TLS with the process's own certificate, or plaintext only when asked
 * for explicitly. One parser, so that the controller and the agents cannot disagree about it.
 */
import { credentials, ServerCredentials, type ChannelCredentials } from '@grpc/grpc-js';
import { mutualTlsChannelCredentials, mutualTlsServerCredentials } from './grpc-credentials.js';
import { identityOf, type Identity } from './identity.js';
import { X509Certificate } from 'node:crypto';
import { readTlsMaterial, TlsFileError, type TlsMaterial } from './tls-files.js';

export type AgentPlane = { insecure: true } | { insecure: false; material: TlsMaterial; identity: Identity };

export const AGENT_PLANE_ENV = {
  TLS_CA_FILE: { default: '', doc: 'the cluster CA (`ca.pem` of `npm run certs`)' },
  TLS_CERT_FILE: { default: '', doc: "this process's certificate from that CA" },
  TLS_KEY_FILE: { default: '', doc: 'its private key' },
  AGENT_PLANE_INSECURE: { default: '0', doc: '1: plaintext agent plane without certificates (a warning at start; for trusted test networks only)' },
} as const;

export type AgentPlaneEnvName = keyof typeof AGENT_PLANE_ENV;

/** The identity named by a PEM certificate (the process's own: it must be what its role expects). */
export function identityOfPem(pem: Buffer): Identity | undefined {
  try {
    return identityOf({ subjectaltname: new X509Certificate(pem).subjectAltName ?? '' });
  } catch {
    return undefined;
  }
}

/**
 * @param expect the identity this process must hold: a node's certificate must name its NODE_ID.
 * @throws TlsFileError naming the variable or file that is wrong
 */
export function loadAgentPlane(env: Partial<Record<AgentPlaneEnvName, string>>, expect: Identity): AgentPlane {
  const insecure = (env.AGENT_PLANE_INSECURE ?? '').trim() || '0';
  if (insecure !== '0' && insecure !== '1') throw new TlsFileError(`AGENT_PLANE_INSECURE=${JSON.stringify(insecure)}: expected 0 or 1`);
  const files = { ca: env.TLS_CA_FILE?.trim() ?? '', cert: env.TLS_CERT_FILE?.trim() ?? '', key: env.TLS_KEY_FILE?.trim() ?? '' };
  if (insecure === '1') return { insecure: true };
  const missing = (['TLS_CA_FILE', 'TLS_CERT_FILE', 'TLS_KEY_FILE'] as const).filter((_, i) => [files.ca, files.cert, files.key][i] === '');
  if (missing.length > 0) {
    throw new TlsFileError(`the agent plane is mutual TLS: set ${missing.join(', ')} (npm run certs makes them), or AGENT_PLANE_INSECURE=1 for plaintext`);
  }
  const material = readTlsMaterial(files);
  const identity = identityOfPem(material.cert);
  const same = identity !== undefined && JSON.stringify(identity) === JSON.stringify(expect);
  if (!same) {
    const want = expect.role === 'node' ? `node ${expect.nodeId}` : `the ${expect.role}`;
    throw new TlsFileError(`TLS_CERT_FILE ${files.cert} is not a certificate of ${want} (its URI SAN must be that of npm run certs)`);
  }
  return { insecure: false, material, identity };
}

export function agentPlaneServerCredentials(plane: AgentPlane): ServerCredentials {
  return plane.insecure ? ServerCredentials.createInsecure() : mutualTlsServerCredentials(plane.material);
}

/** @param expectServer the identity the server's certificate must name (the controller, or node X). */
export function agentPlaneChannelCredentials(plane: AgentPlane, expectServer: Identity): ChannelCredentials {
  return plane.insecure ? credentials.createInsecure() : mutualTlsChannelCredentials(plane.material, expectServer);
}
