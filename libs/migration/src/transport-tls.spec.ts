import { mkdtemp, readFile, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import tls from 'node:tls';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { FramePool, initHashing } from '@vmm/emulator';
import { identityOf, makeClusterCerts } from '@vmm/tls';
import { MigrationReceiver } from './receiver.js';
import { MigrationSender } from './sender.js';
import { connectOutgoing, listenForIncoming, type DataPlaneTls } from './transport.js';
import { encodeHello } from './wire/codec.js';
import { makeIncomingVm, makeSourceVm } from './testing/vm-fixture.js';

let dir: string;
let otherDir: string;

async function tlsOf(d: string, owner: string, expectNode?: string): Promise<DataPlaneTls> {
  const read = (f: string) => readFile(path.join(d, f));
  return {
    ca: await read('ca.pem'),
    cert: await read(`${owner}.pem`),
    key: await read(`${owner}-key.pem`),
    checkPeer: (cert) => {
      const id = identityOf(cert);
      if (id?.role !== 'node') return 'not a node of the cluster';
      return expectNode === undefined || id.nodeId === expectNode ? undefined : `node ${id.nodeId}, not ${expectNode}`;
    },
  };
}

beforeAll(async () => {
  await initHashing();
  dir = await mkdtemp(path.join(os.tmpdir(), 'vmm-data-tls-'));
  otherDir = await mkdtemp(path.join(os.tmpdir(), 'vmm-data-tls-other-'));
  await makeClusterCerts({ out: dir, nodes: ['node-1', 'node-2', 'node-3'] });
  await makeClusterCerts({ out: otherDir, nodes: ['node-1'] });
});
afterAll(async () => {
  await rm(dir, { recursive: true, force: true });
  await rm(otherDir, { recursive: true, force: true });
});

/** Whether a connection is dropped before any answer (the listener keeps waiting for the right one). */
function closedWithoutAnswer(socket: net.Socket): Promise<boolean> {
  return new Promise((resolve) => {
    let answered = false;
    socket.on('data', () => (answered = true));
    socket.on('error', () => undefined);
    socket.on('close', () => resolve(!answered));
  });
}

describe('the data connection over mutual TLS', () => {
  it('migrates a VM between two node certificates, digests equal', async () => {
    const pool = new FramePool();
    const source = makeSourceVm(pool, 'vm-tls', { memoryMib: 32, workingSetMib: 8, kind: 'uniform', dirtyRatePagesPerSec: 20_000 });
    const target = makeIncomingVm(pool, 'vm-tls', 32);
    source.start();
    const listener = await listenForIncoming({ token: 'tok', migrationId: 'mig-tls', tls: await tlsOf(dir, 'node-2', 'node-1') });
    try {
      const incoming = listener.accept.then(({ connection, hello }) => new MigrationReceiver({ vm: target, migrationId: 'mig-tls', token: 'tok' }).run(connection, hello));
      const socket = await connectOutgoing(listener.address, { migrationId: 'mig-tls', tls: await tlsOf(dir, 'node-1', 'node-2') });
      expect(socket).toBeInstanceOf(tls.TLSSocket);
      const out = await new MigrationSender({ vm: source, migrationId: 'mig-tls', token: 'tok' }).run(socket);
      const inc = await incoming;
      expect(inc.targetDigest).toBe(out.sourceDigest);
      out.abort();
      inc.abort();
    } finally {
      listener.close();
      if (source.state !== 'stopped') source.stop();
      if (target.state !== 'stopped') target.stop();
    }
  });

  it('drops, before any frame, a plaintext sender, one of another CA and a node it does not expect; then accepts the right one', async () => {
    const listener = await listenForIncoming({ token: 'tok', migrationId: 'mig-x', tls: await tlsOf(dir, 'node-2', 'node-1') });
    try {
      const hello = encodeHello({ version: 1, migrationId: 'mig-x', token: 'tok', pageCount: 256, memoryMib: 1, image: 'empty', vcpus: 1 });
      const plain = net.connect({ host: '127.0.0.1', port: listener.port });
      plain.on('connect', () => plain.write(hello));
      expect(await closedWithoutAnswer(plain)).toBe(true);

      const foreign = await tlsOf(otherDir, 'node-1');
      const intruder = tls.connect({ host: '127.0.0.1', port: listener.port, ca: (await tlsOf(dir, 'node-1')).ca, cert: foreign.cert, key: foreign.key });
      intruder.on('secureConnect', () => intruder.write(hello));
      expect(await closedWithoutAnswer(intruder)).toBe(true);

      const wrongNode = await tlsOf(dir, 'node-3');
      const other = tls.connect({ host: '127.0.0.1', port: listener.port, ca: wrongNode.ca, cert: wrongNode.cert, key: wrongNode.key });
      other.on('secureConnect', () => other.write(hello));
      expect(await closedWithoutAnswer(other)).toBe(true);

      const right = await connectOutgoing(listener.address, { migrationId: 'mig-x', tls: await tlsOf(dir, 'node-1', 'node-2') });
      right.write(hello);
      const accepted = await listener.accept;
      expect(accepted.hello.migrationId).toBe('mig-x');
      accepted.connection.destroy();
      right.destroy();
    } finally {
      listener.close();
    }
  });

  it('a sender refuses a listener that is not the target it was told about', async () => {
    const listener = await listenForIncoming({ token: 'tok', migrationId: 'mig-y', tls: await tlsOf(dir, 'node-3') });
    try {
      await expect(connectOutgoing(listener.address, { migrationId: 'mig-y', tls: await tlsOf(dir, 'node-1', 'node-2') })).rejects.toMatchObject({
        code: 'CONNECTION_LOST',
        message: expect.stringMatching(/node node-3, not node-2/),
      });
    } finally {
      listener.close();
    }
  });
});
