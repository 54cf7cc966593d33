import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { FramePool, initHashing, type VirtualMachine } from '@vmm/emulator';
import { MigrationReceiver } from './receiver.js';
import { MigrationSender } from './sender.js';
import { connectOutgoing, listenForIncoming, parseAddress } from './transport.js';
import { FrameParser, decodeJson, encodeHello } from './wire/codec.js';
import { FrameType } from './wire/frame.js';
import { makeIncomingVm, makeSourceVm } from './testing/vm-fixture.js';

const cleanups: (() => void)[] = [];
afterEach(() => {
  for (const c of cleanups.splice(0)) c();
});

function track(vm: VirtualMachine): VirtualMachine {
  cleanups.push(() => vm.state !== 'stopped' && vm.stop());
  return vm;
}

/** Connects with a HELLO carrying `token`, returns the first frame the listener answers with. */
async function helloWith(port: number, token: string): Promise<{ type: number; payload: unknown }> {
  const socket = net.connect({ host: '127.0.0.1', port });
  cleanups.push(() => socket.destroy());
  await new Promise((r) => socket.once('connect', r));
  socket.write(encodeHello({ version: 1, migrationId: 'mig-t', token, pageCount: 256, memoryMib: 1, image: 'empty', vcpus: 2 }));
  return new Promise((resolve) => {
    const parser = new FrameParser(
      { onPage: () => undefined, onFrame: (type, payload) => resolve({ type, payload: decodeJson(payload, 'ERROR') }) },
      new Set([FrameType.ERROR, FrameType.HELLO_ACK]),
    );
    socket.on('data', (c: Buffer) => parser.push(c));
  });
}

describe('tcp transport', () => {
  it('migrates a running VM over a real loopback socket', async () => {
    await initHashing();
    const source = track(makeSourceVm(new FramePool(), 'vm-net', { memoryMib: 32, workingSetMib: 8, kind: 'uniform', dirtyRatePagesPerSec: 20_000 }));
    const target = track(makeIncomingVm(new FramePool(), 'vm-net', 32));
    source.start();
    const listener = await listenForIncoming({ token: 'tok-1', migrationId: 'mig-net' });
    cleanups.push(() => listener.close());
    expect(listener.address).toBe(`127.0.0.1:${listener.port}`);
    const incoming = listener.accept.then(({ connection, hello }) =>
      new MigrationReceiver({ vm: target, migrationId: 'mig-net', token: 'tok-1' }).run(connection, hello),
    );
    const socket = await connectOutgoing(listener.address);
    const out = await new MigrationSender({ vm: source, migrationId: 'mig-net', token: 'tok-1' }).run(socket);
    const inc = await incoming;
    expect(out.targetDigest).toBe(out.sourceDigest);
    expect(inc.targetDigest).toBe(out.sourceDigest);
    out.commit();
    inc.commit();
    expect(target.state).toBe('running');
    expect(source.state).toBe('stopped');
  });

  it('answers a wrong token with an ERROR, keeps listening, and accepts the right one', async () => {
    const listener = await listenForIncoming({ token: 'right', migrationId: 'mig-t' });
    cleanups.push(() => listener.close());
    const bad = await helloWith(listener.port, 'wrong');
    expect(bad).toEqual({ type: FrameType.ERROR, payload: expect.objectContaining({ code: 'TOKEN_MISMATCH' }) });
    const good = helloWith(listener.port, 'right');
    const accepted = await listener.accept;
    expect(accepted.hello.migrationId).toBe('mig-t');
    accepted.connection.destroy();
    void good;
  });

  it('rejects accept on timeout and on close', async () => {
    const l1 = await listenForIncoming({ token: 'x', migrationId: 'm', acceptTimeoutMs: 50 });
    await expect(l1.accept).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
    const l2 = await listenForIncoming({ token: 'x', migrationId: 'm' });
    l2.close();
    await expect(l2.accept).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
  });

  it('fails to connect to a closed port with a coded error', async () => {
    const l = await listenForIncoming({ token: 'x', migrationId: 'm' });
    const port = l.port;
    l.close();
    await expect(connectOutgoing(`127.0.0.1:${port}`)).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
  });

  it.each(['nope', '127.0.0.1', '127.0.0.1:0', ':80', '127.0.0.1:99999'])('rejects the address %s', (a) => {
    expect(() => parseAddress(a)).toThrow(/bad data address/);
  });

  it('parses host:port and [v6]:port', () => {
    expect(parseAddress('10.0.0.1:7000')).toEqual({ host: '10.0.0.1', port: 7000 });
    expect(parseAddress('[::1]:7000')).toEqual({ host: '::1', port: 7000 });
  });
});
