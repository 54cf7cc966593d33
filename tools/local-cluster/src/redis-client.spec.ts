import { execFileSync } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from './ports.js';
import { spawnProcess, type ManagedProcess } from './processes.js';
import { connectRedis, countKeysWithPrefix, deleteKeysWithPrefix, pingRedis } from './redis-client.js';
import { findRedisServer, redisServerArgs, waitForRedis } from './redis.js';

function hasOpenssl(): boolean {
  try {
    execFileSync('openssl', ['version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

/** A CA and a server certificate for 127.0.0.1, made with the openssl CLI (test-only). */
function makeCertificates(dir: string): { ca: string; cert: string; key: string } {
  const file = (name: string) => path.join(dir, name);
  const openssl = (...args: string[]) => execFileSync('openssl', args, { stdio: 'ignore' });
  const ec = ['-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes'];
  openssl('req', '-x509', ...ec, '-keyout', file('ca-key.pem'), '-out', file('ca.pem'), '-days', '1', '-subj', '/CN=spec-ca');
  openssl('req', ...ec, '-keyout', file('server-key.pem'), '-out', file('server.csr'), '-subj', '/CN=127.0.0.1');
  writeFileSync(file('san.ext'), 'subjectAltName=IP:127.0.0.1\n');
  openssl(
    'x509', '-req', '-in', file('server.csr'), '-CA', file('ca.pem'), '-CAkey', file('ca-key.pem'), '-CAcreateserial',
    '-out', file('server.pem'), '-days', '1', '-extfile', file('san.ext'),
  );
  return { ca: file('ca.pem'), cert: file('server.pem'), key: file('server-key.pem') };
}

// rediss:// is what the hand-written RESP client could not do: a Redis that speaks only TLS.
describe.skipIf(!hasOpenssl())('rediss:// URLs', () => {
  let dir = '';
  let server: ManagedProcess | undefined;
  let url = '';
  let ca: Buffer;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'rediss-spec-'));
    const certs = makeCertificates(dir);
    ca = readFileSync(certs.ca);
    const port = await freePort();
    server = spawnProcess({
      name: 'redis-tls',
      command: findRedisServer(),
      // --port 0: no plaintext listener at all.
      args: [
        ...redisServerArgs(0, dir),
        '--tls-port', String(port), '--tls-cert-file', certs.cert, '--tls-key-file', certs.key,
        '--tls-ca-cert-file', certs.ca, '--tls-auth-clients', 'no',
      ],
    });
    url = `rediss://127.0.0.1:${port}`;
    const tlsPing = () => pingRedis(url, 500, { tls: { ca } });
    const deadline = Date.now() + 10_000;
    while (!(await tlsPing())) {
      if (!server.running) throw new Error(`redis-server with TLS exited:\n${server.output()}`);
      if (Date.now() > deadline) throw new Error(`redis-server with TLS not ready:\n${server.output()}`);
      await new Promise((r) => setTimeout(r, 50));
    }
  });
  afterAll(async () => {
    await server?.stop();
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  it('connects over TLS, verifying the server against the given CA', async () => {
    expect(await pingRedis(url, 1000, { tls: { ca } })).toBe(true);
    // Without the CA the certificate is not trusted; as plaintext the TLS port does not answer.
    expect(await pingRedis(url, 1000)).toBe(false);
    expect(await pingRedis(url.replace('rediss:', 'redis:'), 1000)).toBe(false);
    await expect(waitForRedis(url.replace('rediss:', 'redis:'), { timeoutMs: 200 })).rejects.toMatchObject({ code: 'READY_TIMEOUT' });
  });

  it('counts and deletes a prefix over TLS', async () => {
    const client = await connectRedis(url, { tls: { ca } });
    try {
      await client.set('tls:a', '1');
      await client.set('tls:b', '2');
      expect(await countKeysWithPrefix(client, 'tls')).toBe(2);
      expect(await deleteKeysWithPrefix(client, 'tls')).toBe(2);
      expect(await countKeysWithPrefix(client, 'tls')).toBe(0);
    } finally {
      client.disconnect();
    }
  });
});

describe('connectRedis', () => {
  it('fails fast when nothing listens', async () => {
    const port = await freePort();
    await expect(connectRedis(`redis://127.0.0.1:${port}`, { timeoutMs: 500 })).rejects.toThrow(/ECONNREFUSED|connect/);
    expect(await pingRedis(`redis://127.0.0.1:${port}`, 300)).toBe(false);
  });
});
