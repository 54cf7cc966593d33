import net from 'node:net';
import { describe, expect, it } from 'vitest';
import { dialVerifyChannel, listenVerifyChannel } from './verify-channel.js';

describe('the verify channel of a QEMU migration', () => {
  it('gives the port to the holder of the token and carries the digest back', async () => {
    const listener = await listenVerifyChannel('127.0.0.1', 'mig-1', 'token-123', 5_000);
    const dialed = dialVerifyChannel('127.0.0.1', listener.port, 'mig-1', 'token-123', 5_000);
    // accepted: the hello was checked (and consumed) by the listener.
    const target = await listener.accepted;
    target.send({ type: 'welcome', qemuPort: 4444 });
    const { channel, qemuPort } = await dialed;
    expect(qemuPort).toBe(4444);
    channel.send({ type: 'digest' });
    expect(await target.next(1_000)).toEqual({ type: 'digest' });
    target.send({ type: 'digest', digest: 'abcd', dumpMs: 1, hashMs: 2 });
    expect(await channel.next(1_000)).toEqual({ type: 'digest', digest: 'abcd', dumpMs: 1, hashMs: 2 });
    channel.close();
    await expect(target.next(1_000)).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
  });

  it('refuses a wrong token and keeps waiting for the right one', async () => {
    const listener = await listenVerifyChannel('127.0.0.1', 'mig-2', 'right-token', 5_000);
    await expect(dialVerifyChannel('127.0.0.1', listener.port, 'mig-2', 'wrong-token', 2_000)).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
    const dialed = dialVerifyChannel('127.0.0.1', listener.port, 'mig-2', 'right-token', 2_000);
    const target = await listener.accepted;
    target.send({ type: 'welcome', qemuPort: 1 });
    const { channel } = await dialed;
    channel.close();
  });

  it('fails a wait when the peer goes away, and an accept that times out', async () => {
    const server = net.createServer((s) => s.destroy());
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as net.AddressInfo).port;
    await expect(dialVerifyChannel('127.0.0.1', port, 'mig-3', 'token-123', 2_000)).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
    server.close();
    const listener = await listenVerifyChannel('127.0.0.1', 'mig-4', 'token-123', 50);
    await expect(listener.accepted).rejects.toMatchObject({ code: 'CONNECTION_LOST' });
  });
});
