/**
 * Makes the cluster's certificates with @peculiar/x509 over Node's WebCrypto: a CA, and leaf
 * certificates (ECDSA P-256, server and client use) that name their holder in a URI SAN (identity.ts)
 * and the addresses they serve in DNS and IP SANs. An existing CA in the directory is reused, so that
 * certificates for nodes added later are signed by the CA the cluster already trusts.
 */
// @peculiar/x509 resolves its ASN.1 providers through tsyringe, which needs the Reflect metadata polyfill.
import 'reflect-metadata';
import { webcrypto } from 'node:crypto';

type CryptoKey = webcrypto.CryptoKey;
type CryptoKeyPair = webcrypto.CryptoKeyPair;
import { existsSync } from 'node:fs';
import { chmod, mkdir, readFile, writeFile } from 'node:fs/promises';
import net from 'node:net';
import path from 'node:path';
import * as x509 from '@peculiar/x509';
import { identityUri, NODE_ID_PATTERN, type Identity } from './identity.js';

x509.cryptoProvider.set(webcrypto as unknown as Parameters<typeof x509.cryptoProvider.set>[0]);

const ALGORITHM = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;
const DAY_MS = 86_400_000;
const CA_DAYS = 3650;

export interface MakeCertsOptions {
  out: string;
  nodes: readonly string[];
  /** Extra DNS names or IPs every server certificate names (hosts the cluster runs on). */
  hosts?: readonly string[];
  days?: number;
  /**
   * Also one directory per holder, `<out>/<owner>/` with ca.pem and that holder's pair only: what to
   * copy (or mount) onto a host, so that no host holds another's key or the CA's.
   */
  split?: boolean;
  /** Also an API tokens file (`operator <random token>`, mode 0600) at this path, unless it exists. */
  apiTokenFile?: string;
}

export interface MadeCerts {
  dir: string;
  files: string[];
  reusedCa: boolean;
}

export class CertsUsageError extends Error {}

/** The names a server certificate always carries: loopback, so that local clusters verify without overrides. */
const LOOPBACK_NAMES = ['localhost', '127.0.0.1', '::1'];

export function certFileNames(owner: string): { cert: string; key: string } {
  return { cert: `${owner}.pem`, key: `${owner}-key.pem` };
}

function generalName(name: string): x509.JsonGeneralName {
  return net.isIP(name) ? { type: 'ip', value: name } : { type: 'dns', value: name };
}

function validateOptions(options: MakeCertsOptions): void {
  if (options.nodes.length === 0) throw new CertsUsageError('--nodes names no node');
  const seen = new Set<string>();
  for (const node of options.nodes) {
    if (!NODE_ID_PATTERN.test(node)) throw new CertsUsageError(`node id ${JSON.stringify(node)} must match ${NODE_ID_PATTERN}`);
    if (node === 'ca' || node === 'controller' || node === 'operator') throw new CertsUsageError(`node id ${JSON.stringify(node)} is reserved`);
    if (seen.has(node)) throw new CertsUsageError(`node ${node} is named twice`);
    seen.add(node);
  }
  for (const host of options.hosts ?? []) {
    if (!net.isIP(host) && !/^[A-Za-z0-9*]([A-Za-z0-9.-]{0,252})$/.test(host)) throw new CertsUsageError(`host ${JSON.stringify(host)} is neither an IP nor a DNS name`);
  }
  const days = options.days ?? 365;
  if (!Number.isInteger(days) || days < 1 || days > 3650) throw new CertsUsageError(`--days must be an integer in 1..3650, got ${days}`);
}

function serial(): string {
  // Positive 128-bit serial: the top bit clear so that DER does not read it as negative.
  const bytes = webcrypto.getRandomValues(new Uint8Array(16));
  bytes[0] = bytes[0]! & 0x7f;
  return Buffer.from(bytes).toString('hex');
}

async function exportKey(key: CryptoKey): Promise<string> {
  const der = await webcrypto.subtle.exportKey('pkcs8', key);
  return x509.PemConverter.encode(der, 'PRIVATE KEY');
}

interface Ca {
  cert: x509.X509Certificate;
  key: CryptoKey;
}

async function loadOrMakeCa(dir: string, written: string[]): Promise<{ ca: Ca; reused: boolean }> {
  const certFile = path.join(dir, 'ca.pem');
  const keyFile = path.join(dir, 'ca-key.pem');
  if (existsSync(certFile) !== existsSync(keyFile)) {
    // A host's copy holds ca.pem without the CA's key: making a new CA here would silently split the cluster.
    throw new CertsUsageError(`${dir} holds ${existsSync(certFile) ? 'ca.pem but not ca-key.pem' : 'ca-key.pem but not ca.pem'}: make certificates where the CA's key is`);
  }
  if (existsSync(certFile) && existsSync(keyFile)) {
    const cert = new x509.X509Certificate(await readFile(certFile, 'utf8'));
    const der = x509.PemConverter.decodeFirst(await readFile(keyFile, 'utf8'));
    const key = await webcrypto.subtle.importKey('pkcs8', der, ALGORITHM, false, ['sign']);
    return { ca: { cert, key }, reused: true };
  }
  const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: serial(),
    name: 'CN=vmm cluster CA',
    notBefore: new Date(now - 60_000),
    // The CA outlives its leaves (10 years): renewing a leaf is one command, replacing a CA is every host.
    notAfter: new Date(now + CA_DAYS * DAY_MS),
    signingAlgorithm: ALGORITHM,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, 0, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign, true),
      await x509.SubjectKeyIdentifierExtension.create(keys.publicKey),
    ],
  });
  await writeSecret(keyFile, await exportKey(keys.privateKey));
  await writeFile(certFile, cert.toString('pem') + '\n');
  written.push(certFile, keyFile);
  return { ca: { cert, key: keys.privateKey }, reused: false };
}

async function writeSecret(file: string, content: string): Promise<void> {
  await writeFile(file, content + '\n', { mode: 0o600 });
  await chmod(file, 0o600);
}

async function makeLeaf(ca: Ca, owner: string, identity: Identity, dnsAndIps: readonly string[], days: number, dir: string, written: string[]): Promise<void> {
  const keys = (await webcrypto.subtle.generateKey(ALGORITHM, true, ['sign', 'verify'])) as CryptoKeyPair;
  const now = Date.now();
  const names = [...new Set(dnsAndIps)].map(generalName);
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial(),
    subject: `CN=${owner}`,
    issuer: ca.cert.subject,
    notBefore: new Date(now - 60_000),
    notAfter: new Date(Math.min(now + days * DAY_MS, ca.cert.notAfter.getTime())),
    signingAlgorithm: ALGORITHM,
    publicKey: keys.publicKey,
    signingKey: ca.key,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyAgreement, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth, x509.ExtendedKeyUsage.clientAuth]),
      new x509.SubjectAlternativeNameExtension([{ type: 'url', value: identityUri(identity) }, ...names]),
      await x509.AuthorityKeyIdentifierExtension.create(ca.cert),
    ],
  });
  const files = certFileNames(owner);
  await writeFile(path.join(dir, files.cert), cert.toString('pem') + '\n');
  await writeSecret(path.join(dir, files.key), await exportKey(keys.privateKey));
  written.push(path.join(dir, files.cert), path.join(dir, files.key));
}

/** Writes ca.pem (+ ca-key.pem), controller, operator and one pair per node into `out` (made if absent). */
export async function makeClusterCerts(options: MakeCertsOptions): Promise<MadeCerts> {
  validateOptions(options);
  const days = options.days ?? 365;
  const dir = path.resolve(options.out);
  await mkdir(dir, { recursive: true, mode: 0o700 });
  const written: string[] = [];
  const { ca, reused } = await loadOrMakeCa(dir, written);
  const hosts = options.hosts ?? [];
  await makeLeaf(ca, 'controller', { role: 'controller' }, ['controller', ...LOOPBACK_NAMES, ...hosts], days, dir, written);
  await makeLeaf(ca, 'operator', { role: 'operator' }, [], days, dir, written);
  for (const nodeId of options.nodes) {
    await makeLeaf(ca, nodeId, { role: 'node', nodeId }, [nodeId, ...LOOPBACK_NAMES, ...hosts], days, dir, written);
  }
  if (options.split) {
    for (const owner of ['controller', 'operator', ...options.nodes]) {
      const own = path.join(dir, owner);
      await mkdir(own, { recursive: true, mode: 0o700 });
      const files = certFileNames(owner);
      await writeFile(path.join(own, 'ca.pem'), await readFile(path.join(dir, 'ca.pem')));
      await writeFile(path.join(own, files.cert), await readFile(path.join(dir, files.cert)));
      await writeSecret(path.join(own, files.key), (await readFile(path.join(dir, files.key), 'utf8')).trimEnd());
      written.push(path.join(own, files.cert), path.join(own, files.key));
    }
  }
  if (options.apiTokenFile && !existsSync(options.apiTokenFile)) {
    const token = Buffer.from(webcrypto.getRandomValues(new Uint8Array(24))).toString('base64url');
    await writeSecret(options.apiTokenFile, `# operator token made by npm run certs\noperator ${token}`);
    written.push(options.apiTokenFile);
  }
  return { dir, files: written, reusedCa: reused };
}
