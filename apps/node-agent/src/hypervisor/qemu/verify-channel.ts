/**
 * The agent-to-agent side channel of a QEMU migration. QEMU carries the guest's state over its own
 * TCP connection, which knows nothing of the migration's token or of the digests, so the two agents
 * talk over one more connection, JSON lines:
 *
 *   source → target  {type: 'hello', migrationId, token}         (first line; anything else closes it)
 *   target → source  {type: 'welcome', qemuPort}                  (where the target's QEMU listens)
 *   source → target  {type: 'digest'}                             (the source's QEMU reported completed)
 *   target → source  {type: 'digest', digest, dumpMs, hashMs}     (the target's RAM, hashed while paused)
 *                  | {type: 'error', code, message}
 *
 * The target's data_address (PrepareIncomingResponse) is this channel's: the port QEMU listens on is
 * reported over it, to the holder of the token only. The source closing it before the digest discards
 * the target's copy, as a dropped data connection does for the emulator.
 */
import net from 'node:net';
import { connectOutgoing, ConnectionLostError, secureAcceptedSocket, type DataPlaneTls } from '@vmm/migration';

/** A line longer than this is a broken peer. */
const MAX_LINE_BYTES = 64 * 1024;

export type VerifyMessage =
  | { type: 'hello'; migrationId: string; token: string }
  | { type: 'welcome'; qemuPort: number }
  | { type: 'digest'; digest?: string; dumpMs?: number; hashMs?: number }
  | { type: 'error'; code: string; message: string };

/** One end of the channel: send a message, wait for the next one; closed() settles once the socket is. */
export class VerifyChannel {
  private buffer = '';
  private readonly queue: VerifyMessage[] = [];
  private waiter: { resolve: (m: VerifyMessage) => void; reject: (e: Error) => void } | undefined;
  private ended: Error | undefined;
  readonly closed: Promise<void>;

  constructor(
    readonly socket: net.Socket,
    private readonly migrationId: string,
  ) {
    socket.setNoDelay(true);
    socket.setEncoding('utf8');
    this.closed = new Promise((resolve) => socket.once('close', () => resolve()));
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.end(new ConnectionLostError(migrationId, `verify channel: ${err.message}`)));
    socket.on('close', () => this.end(new ConnectionLostError(migrationId, 'the peer agent closed the verify channel')));
  }

  send(message: VerifyMessage): void {
    if (!this.socket.destroyed) this.socket.write(`${JSON.stringify(message)}\n`);
  }

  /** The next message; rejects with ConnectionLostError once the socket is gone, or after `timeoutMs`. */
  next(timeoutMs: number): Promise<VerifyMessage> {
    const queued = this.queue.shift();
    if (queued) return Promise.resolve(queued);
    if (this.ended) return Promise.reject(this.ended);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiter = undefined;
        reject(new ConnectionLostError(this.migrationId, `no answer on the verify channel within ${timeoutMs} ms`));
      }, timeoutMs);
      timer.unref();
      this.waiter = {
        resolve: (m) => (clearTimeout(timer), resolve(m)),
        reject: (e) => (clearTimeout(timer), reject(e)),
      };
    });
  }

  close(): void {
    this.socket.destroy();
  }

  private onData(chunk: string): void {
    this.buffer += chunk;
    if (this.buffer.length > MAX_LINE_BYTES) {
      this.end(new ConnectionLostError(this.migrationId, 'verify channel: line too long'));
      this.socket.destroy();
      return;
    }
    let nl: number;
    while ((nl = this.buffer.indexOf('\n')) >= 0) {
      const line = this.buffer.slice(0, nl);
      this.buffer = this.buffer.slice(nl + 1);
      let message: VerifyMessage;
      try {
        message = JSON.parse(line) as VerifyMessage;
      } catch {
        this.socket.destroy();
        return;
      }
      const w = this.waiter;
      this.waiter = undefined;
      if (w) w.resolve(message);
      else this.queue.push(message);
    }
  }

  private end(err: Error): void {
    this.ended ??= err;
    const w = this.waiter;
    this.waiter = undefined;
    w?.reject(this.ended);
  }
}

/** Dials the target's channel and says hello; resolves with the channel and the port QEMU listens on. */
export async function dialVerifyChannel(
  host: string,
  port: number,
  migrationId: string,
  token: string,
  timeoutMs: number,
  tls?: DataPlaneTls,
): Promise<{ channel: VerifyChannel; qemuPort: number }> {
  // Over mutual TLS (the agent plane's, with the target node the controller named), as the emulator's data connection.
  const socket = tls ? await connectOutgoing(`${host.includes(':') ? `[${host}]` : host}:${port}`, { migrationId, timeoutMs, tls }) : await new Promise<net.Socket>((resolve, reject) => {
    const s = net.connect({ host, port });
    const timer = setTimeout(() => (s.destroy(), reject(new ConnectionLostError(migrationId, `cannot reach the target agent at ${host}:${port}`))), timeoutMs);
    s.once('connect', () => (clearTimeout(timer), resolve(s)));
    s.once('error', (err) => (clearTimeout(timer), reject(new ConnectionLostError(migrationId, `target agent ${host}:${port}: ${err.message}`))));
  });
  const channel = new VerifyChannel(socket, migrationId);
  channel.send({ type: 'hello', migrationId, token });
  const welcome = await channel.next(timeoutMs).catch((err: Error) => {
    channel.close();
    throw err;
  });
  if (welcome.type !== 'welcome' || !Number.isInteger(welcome.qemuPort)) {
    channel.close();
    throw new ConnectionLostError(migrationId, `the target agent refused the migration (${welcome.type === 'error' ? welcome.message : welcome.type})`);
  }
  return { channel, qemuPort: welcome.qemuPort };
}

/**
 * The target's listener: the first connection that says hello with this migration's id and token is
 * the source's (others are closed). Rejects after `acceptTimeoutMs` without one.
 */
export async function listenVerifyChannel(
  host: string,
  migrationId: string,
  token: string,
  acceptTimeoutMs: number,
  tls?: DataPlaneTls,
): Promise<{ port: number; accepted: Promise<VerifyChannel>; close: () => void }> {
  const server = net.createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen({ host, port: 0 }, () => resolve());
  });
  const port = (server.address() as net.AddressInfo).port;
  const close = () => server.close();
  const accepted = new Promise<VerifyChannel>((resolve, reject) => {
    const timer = setTimeout(() => (close(), reject(new ConnectionLostError(migrationId, `no source connected within ${acceptTimeoutMs} ms`))), acceptTimeoutMs);
    timer.unref();
    server.on('close', () => (clearTimeout(timer), reject(new ConnectionLostError(migrationId, 'the verify listener closed'))));
    server.on('connection', (accepted) => {
      accepted.on('error', () => undefined);
      const socket = tls ? secureAcceptedSocket(accepted, tls) : accepted;
      const channel = new VerifyChannel(socket, migrationId);
      channel.next(5_000).then(
        (hello) => {
          if (hello.type !== 'hello' || hello.migrationId !== migrationId || hello.token !== token) {
            channel.send({ type: 'error', code: 'TOKEN_MISMATCH', message: 'wrong migration or token' });
            channel.close();
            return;
          }
          clearTimeout(timer);
          close();
          resolve(channel);
        },
        () => channel.close(),
      );
    });
  });
  accepted.catch(() => {});
  return { port, accepted, close };
}
