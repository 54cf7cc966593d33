import { mkdtemp, readFile, rm, stat } from 'node:fs/promises';
import { once } from 'node:events';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { CertsUsageError, makeClusterCerts } from './cluster-ca.js';
import { identityOf } from './identity.js';
import { readTlsMaterial, TlsFileError, type TlsMaterial } from './tls-files.js';

let dir: string;
let otherDir: string;

function material(d: string, owner: string): TlsMaterial {
  return readTlsMaterial({ ca: path.join(d, 'ca.pem'), cert: path.join(d, `${owner}.pem`), key: path.join(d, `${owner}-key.pem`) });
}

/** A real mutual-TLS handshake on loopback: what each end saw of the other, or the client's error. */
async function handshake(server: TlsMaterial, client: TlsMaterial, host = '127.0.0.1') {
  const srv = tls.createServer({ ...server, requestCert: true, rejectUnauthorized: true });
  const seen = new Promise<tls.PeerCertificate>((resolve) => srv.once('secureConnection', (s) => resolve(s.getPeerCertificate())));
  srv.on('tlsClientError', () => undefined);
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  const port = (srv.address() as { port: number }).port;
  try {
    const socket = tls.connect({ host, port, ...client, servername: host === '127.0.0.1' ? undefined : host });
    socket.on('error', () => undefined);
    // In TLS 1.3 the client may finish before the server has checked its certificate: success is
    // both ends done; a refusal by either end closes the socket first.
    const closed = new Promise<{ ok: false; error: string }>((resolve) => socket.once('close', () => resolve({ ok: false, error: 'closed' })));
    const result = await Promise.race([
      // once() rejects on 'error': a refused handshake lands in the catch.
      once(socket, 'secureConnect').then(
        async () => {
          const clientCert = await Promise.race([seen, closed]);
          return 'ok' in clientCert ? clientCert : { ok: true as const, serverCert: socket.getPeerCertificate(), clientCert };
        },
        (err: Error) => ({ ok: false as const, error: err.message }),
      ),
      closed,
    ]);
    socket.destroy();
    return result;
  } finally {
    srv.close();
  }
}

beforeAll(async () => {
  dir = await mkdtemp(path.join(os.tmpdir(), 'vmm-certs-'));
  otherDir = await mkdtemp(path.join(os.tmpdir(), 'vmm-certs-other-'));
  await makeClusterCerts({ out: dir, nodes: ['node-1', 'node-2'] });
  await makeClusterCerts({ out: otherDir, nodes: ['node-1'] });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(otherDir, { recursive: true, force: true });
});

describe('makeClusterCerts', () => {
  it('writes the files API.md names, keys readable by their owner only', async () => {
    for (const f of ['ca.pem', 'controller.pem', 'controller-key.pem', 'operator.pem', 'operator-key.pem', 'node-1.pem', 'node-1-key.pem', 'node-2.pem']) {
      expect((await stat(path.join(dir, f))).isFile()).toBe(true);
    }
    expect((await stat(path.join(dir, 'node-1-key.pem'))).mode & 0o077).toBe(0);
    expect((await stat(path.join(dir, 'ca-key.pem'))).mode & 0o077).toBe(0);
  });

  it('a node and the controller authenticate each other, each seeing who the other is', async () => {
    const r = await handshake(material(dir, 'controller'), material(dir, 'node-1'));
    expect(r.ok).toBe(true);
    if (!r.ok) return;
    expect(identityOf(r.clientCert)).toEqual({ role: 'node', nodeId: 'node-1' });
    expect(identityOf(r.serverCert)).toEqual({ role: 'controller' });
  });

  it('the operator certificate names the operator; server certificates verify by DNS name too', async () => {
    const r = await handshake(material(dir, 'node-2'), material(dir, 'operator'), 'localhost');
    expect(r.ok && identityOf(r.clientCert)).toEqual({ role: 'operator' });
    expect(r.ok && identityOf(r.serverCert)).toEqual({ role: 'node', nodeId: 'node-2' });
  });

  it("a certificate of another CA is refused at the handshake, in both directions", async () => {
    const intruder = material(otherDir, 'node-1');
    expect((await handshake(material(dir, 'controller'), intruder)).ok).toBe(false);
    expect((await handshake(intruder, material(dir, 'controller'))).ok).toBe(false);
  });

  it('reuses an existing CA: certificates made later join the same cluster', async () => {
    const before = await readFile(path.join(dir, 'ca.pem'), 'utf8');
    const made = await makeClusterCerts({ out: dir, nodes: ['node-3'], hosts: ['10.0.0.7', 'host-a.example'] });
    expect(made.reusedCa).toBe(true);
    expect(await readFile(path.join(dir, 'ca.pem'), 'utf8')).toBe(before);
    const r = await handshake(material(dir, 'controller'), material(dir, 'node-3'));
    expect(r.ok && identityOf(r.clientCert)).toEqual({ role: 'node', nodeId: 'node-3' });
  });

  it.each([
    [{ nodes: [] }, /names no node/],
    [{ nodes: ['bad id'] }, /must match/],
    [{ nodes: ['controller'] }, /reserved/],
    [{ nodes: ['a', 'a'] }, /twice/],
    [{ nodes: ['a'], days: 0 }, /--days/],
    [{ nodes: ['a'], hosts: ['a b'] }, /neither an IP/],
  ])('refuses bad options %j', async (opts, message) => {
    await expect(makeClusterCerts({ out: path.join(dir, 'never'), ...opts })).rejects.toThrow(CertsUsageError);
    await expect(makeClusterCerts({ out: path.join(dir, 'never'), ...opts })).rejects.toThrow(message);
  });
});

describe('identityOf', () => {
  it.each([
    [undefined, undefined],
    [{ subjectaltname: '' }, undefined],
    [{ subjectaltname: 'DNS:node-1, IP Address:127.0.0.1' }, undefined],
    [{ subjectaltname: 'URI:urn:vmm:node:node-1, URI:urn:vmm:controller' }, undefined],
    [{ subjectaltname: 'URI:urn:vmm:node:bad id' }, undefined],
    [{ subjectaltname: 'URI:urn:vmm:admin' }, undefined],
    [{ subjectaltname: 'DNS:x, URI:urn:vmm:controller' }, { role: 'controller' }],
  ])('%j → %j', (cert, expected) => {
    expect(identityOf(cert)).toEqual(expected);
  });
});

describe('readTlsMaterial', () => {
  it('names the file that is missing or holds no PEM', () => {
    expect(() => readTlsMaterial({ ca: path.join(dir, 'nope.pem'), cert: '', key: '' })).toThrow(/CA certificate .*nope\.pem: ENOENT/);
    expect(() => readTlsMaterial({ ca: path.join(dir, 'ca.pem'), cert: path.join(dir, 'node-1-key.pem'), key: '' })).toThrow(TlsFileError);
  });
});
