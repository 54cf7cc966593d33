import { mkdtemp, rm } from 'node:fs/promises';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { QmpCommandError, QmpConnectionError, QmpTimeoutError } from '../errors.js';
import { QmpClient, type QmpEvent } from './qmp-client.js';

/** A fake QEMU monitor: greets, answers qmp_capabilities, then hands each command to `onCommand`. */
class FakeQmp {
  readonly server = net.createServer((s) => this.accept(s));
  sockets: net.Socket[] = [];
  greeting = '{"QMP": {"version": {"qemu": {"major": 7, "minor": 2, "micro": 22}, "package": ""}, "capabilities": []}}\r\n';
  onCommand: (cmd: { execute: string; arguments?: unknown; id: number }, s: net.Socket) => void = (cmd, s) =>
    s.write(`${JSON.stringify({ return: {}, id: cmd.id })}\r\n`);

  constructor(readonly socketPath: string) {}

  listen(): Promise<void> {
    return new Promise((resolve) => this.server.listen(this.socketPath, resolve));
  }

  private accept(s: net.Socket): void {
    this.sockets.push(s);
    if (this.greeting) s.write(this.greeting);
    let buf = '';
    s.on('data', (d) => {
      buf += d.toString();
      let nl;
      while ((nl = buf.indexOf('\n')) !== -1) {
        const cmd = JSON.parse(buf.slice(0, nl));
        buf = buf.slice(nl + 1);
        if (cmd.execute === 'qmp_capabilities') s.write(`${JSON.stringify({ return: {}, id: cmd.id })}\r\n`);
        else this.onCommand(cmd, s);
      }
    });
    s.on('error', () => {});
  }

  close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    return new Promise((resolve) => this.server.close(() => resolve()));
  }
}

describe('QmpClient', () => {
  let dir: string;
  let fake: FakeQmp;
  let client: QmpClient | undefined;

  beforeEach(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), 'qmp-spec-'));
    fake = new FakeQmp(path.join(dir, 'qmp.sock'));
    await fake.listen();
  });

  afterEach(async () => {
    client?.close();
    client = undefined;
    await fake.close();
    await rm(dir, { recursive: true, force: true });
  });

  it('reads the greeting, negotiates capabilities and matches replies to commands by id, in any order', async () => {
    const held: Array<{ id: number; execute: string }> = [];
    fake.onCommand = (cmd, s) => {
      held.push(cmd);
      if (held.length === 2) {
        // Answer the second first, with an event in between.
        s.write(`${JSON.stringify({ return: { n: 2 }, id: held[1].id })}\r\n`);
        s.write('{"event": "STOP", "timestamp": {"seconds": 1, "microseconds": 2}}\r\n');
        s.write(`${JSON.stringify({ return: { n: 1 }, id: held[0].id })}\n`);
      }
    };
    client = await QmpClient.connect(fake.socketPath);
    expect(client.version).toEqual({ major: 7, minor: 2, micro: 22 });
    const events: QmpEvent[] = [];
    client.on('event', (e: QmpEvent) => events.push(e));
    const [one, two] = await Promise.all([client.execute('query-status'), client.execute('query-migrate', { x: 1 })]);
    expect(one).toEqual({ n: 1 });
    expect(two).toEqual({ n: 2 });
    expect(events.map((e) => e.event)).toEqual(['STOP']);
  });

  it('rejects an error reply with QmpCommandError carrying class and description', async () => {
    fake.onCommand = (cmd, s) => s.write(`${JSON.stringify({ error: { class: 'GenericError', desc: 'no such thing' }, id: cmd.id })}\n`);
    client = await QmpClient.connect(fake.socketPath);
    const err = await client.execute('bogus').catch((e: unknown) => e);
    expect(err).toBeInstanceOf(QmpCommandError);
    expect(err).toMatchObject({ code: 'QMP_COMMAND_FAILED', command: 'bogus', errorClass: 'GenericError', desc: 'no such thing' });
  });

  it('times a command out and drops its late reply', async () => {
    let late: (() => void) | undefined;
    fake.onCommand = (cmd, s) => {
      late = () => s.write(`${JSON.stringify({ return: {}, id: cmd.id })}\n`);
    };
    client = await QmpClient.connect(fake.socketPath);
    await expect(client.execute('slow', undefined, { timeoutMs: 50 })).rejects.toBeInstanceOf(QmpTimeoutError);
    late?.();
    fake.onCommand = (cmd, s) => s.write(`${JSON.stringify({ return: 'ok', id: cmd.id })}\n`);
    expect(await client.execute('next')).toBe('ok'); // the connection is still good
  });

  it('rejects pending and later commands with QmpConnectionError when QEMU goes', async () => {
    fake.onCommand = () => {};
    client = await QmpClient.connect(fake.socketPath);
    const closed = new Promise((resolve) => client!.once('close', resolve));
    const pending = client.execute('query-status');
    for (const s of fake.sockets) s.destroy();
    await expect(pending).rejects.toBeInstanceOf(QmpConnectionError);
    await closed;
    expect(client.isClosed).toBe(true);
    await expect(client.execute('query-status')).rejects.toMatchObject({ code: 'QMP_DISCONNECTED' });
  });

  it('drops a connection that sends what is not QMP', async () => {
    fake.onCommand = (_cmd, s) => s.write('this is not json\n');
    client = await QmpClient.connect(fake.socketPath);
    await expect(client.execute('query-status')).rejects.toBeInstanceOf(QmpConnectionError);
  });

  it('fails to connect within its deadline when no greeting comes, and when nobody listens', async () => {
    fake.greeting = '';
    await expect(QmpClient.connect(fake.socketPath, { timeoutMs: 100 })).rejects.toBeInstanceOf(QmpTimeoutError);
    await expect(QmpClient.connect(path.join(dir, 'nobody.sock'), { timeoutMs: 100 })).rejects.toBeInstanceOf(QmpConnectionError);
  });

  it('waits for an event that matches, and times out otherwise', async () => {
    client = await QmpClient.connect(fake.socketPath);
    const waiting = client.waitForEvent('MIGRATION', 2_000, (e) => e.data?.status === 'completed');
    for (const s of fake.sockets) {
      s.write('{"event": "MIGRATION", "data": {"status": "active"}}\n');
      s.write('{"event": "MIGRATION", "data": {"status": "completed"}}\n');
    }
    expect((await waiting).data).toEqual({ status: 'completed' });
    await expect(client.waitForEvent('RESUME', 50)).rejects.toBeInstanceOf(QmpTimeoutError);
  });
});
