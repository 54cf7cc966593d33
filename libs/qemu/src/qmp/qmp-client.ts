import { EventEmitter } from 'node:events';
import net from 'node:net';
import { QmpCommandError, QmpConnectionError, QmpTimeoutError } from '../errors.js';

/**
 * A QMP (QEMU Machine Protocol) client over a unix socket. The protocol: QEMU sends a greeting
 * ({"QMP": {...}}), the client answers `qmp_capabilities`, then each command is one JSON object per line
 * ({"execute", "arguments", "id"}) answered by {"return", "id"} or {"error", "id"}, with asynchronous
 * events ({"event", "data", "timestamp"}) interleaved anywhere. No npm package for QMP is maintained,
 * so this is the small one the driver needs: ids matched to promises, a deadline per command, events
 * to listeners, and every pending command rejected when the connection goes.
 */

export interface QmpEvent {
  event: string;
  data?: Record<string, unknown>;
  timestamp?: { seconds: number; microseconds: number };
}

export interface QmpConnectOptions {
  /** Deadline for connecting, the greeting and qmp_capabilities together. */
  timeoutMs?: number;
  /** Default deadline of each command. */
  commandTimeoutMs?: number;
}

interface Pending {
  command: string;
  resolve: (value: unknown) => void;
  reject: (error: Error) => void;
  timer: NodeJS.Timeout;
}

/** A line longer than this is not QMP: the connection is dropped rather than buffered without bound. */
export const MAX_QMP_LINE_BYTES = 16 * 1024 * 1024;
export const DEFAULT_QMP_COMMAND_TIMEOUT_MS = 10_000;

/**
 * Events: 'event' (QmpEvent) for every asynchronous event, 'close' (Error | undefined) once, when the
 * connection ends (undefined after close()).
 */
export class QmpClient extends EventEmitter {
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private buffered = '';
  private closedWith: Error | null = null;
  private greeting: ((value: Record<string, unknown>) => void) | null = null;
  /** The QEMU version from the greeting, e.g. { major: 7, minor: 2, micro: 22 }. */
  version: { major: number; minor: number; micro: number } | null = null;

  private constructor(
    private readonly socket: net.Socket,
    private readonly commandTimeoutMs: number,
  ) {
    super();
    socket.setEncoding('utf8');
    socket.on('data', (chunk: string) => this.onData(chunk));
    socket.on('error', (err) => this.shutdown(new QmpConnectionError(err.message)));
    socket.on('close', () => this.shutdown(new QmpConnectionError('QEMU closed the QMP socket')));
  }

  /** Connects, reads the greeting and negotiates capabilities. @throws QmpConnectionError, QmpTimeoutError */
  static async connect(socketPath: string, opts: QmpConnectOptions = {}): Promise<QmpClient> {
    const timeoutMs = opts.timeoutMs ?? 5_000;
    const socket = net.createConnection(socketPath);
    const client = new QmpClient(socket, opts.commandTimeoutMs ?? DEFAULT_QMP_COMMAND_TIMEOUT_MS);
    let timer: NodeJS.Timeout | undefined;
    const deadline = new Promise<never>((_, reject) => {
      timer = setTimeout(() => reject(new QmpTimeoutError(`connect to ${socketPath}`, timeoutMs)), timeoutMs);
    });
    const closed = new Promise<never>((_, reject) => client.once('close', (err: Error | undefined) => reject(err ?? new QmpConnectionError('closed'))));
    try {
      const hello = await Promise.race([
        new Promise<Record<string, unknown>>((resolve) => {
          client.greeting = resolve;
        }),
        deadline,
        closed,
      ]);
      client.version = parseVersion(hello);
      await Promise.race([client.execute('qmp_capabilities', undefined, { timeoutMs }), deadline, closed]);
      return client;
    } catch (err) {
      client.close();
      throw err;
    } finally {
      clearTimeout(timer);
      closed.catch(() => {}); // the race is over; a later close is the 'close' event's business
    }
  }

  get isClosed(): boolean {
    return this.closedWith !== null;
  }

  /**
   * Sends one command and resolves with its `return` value.
   * @throws QmpCommandError (QEMU's error reply), QmpTimeoutError, QmpConnectionError
   */
  execute<T = unknown>(command: string, args?: Record<string, unknown>, opts: { timeoutMs?: number } = {}): Promise<T> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    const id = this.nextId++;
    const timeoutMs = opts.timeoutMs ?? this.commandTimeoutMs;
    return new Promise<T>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending.delete(id); // a late reply is dropped
        reject(new QmpTimeoutError(command, timeoutMs));
      }, timeoutMs);
      this.pending.set(id, { command, resolve: resolve as (v: unknown) => void, reject, timer });
      const message = args === undefined ? { execute: command, id } : { execute: command, arguments: args, id };
      this.socket.write(`${JSON.stringify(message)}\n`);
    });
  }

  /**
   * Resolves with the next event named `name` that satisfies `accept`, or rejects after `timeoutMs` or
   * when the connection closes. Events before the call are not seen: subscribe before causing them.
   */
  waitForEvent(name: string, timeoutMs: number, accept: (e: QmpEvent) => boolean = () => true): Promise<QmpEvent> {
    if (this.closedWith) return Promise.reject(this.closedWith);
    return new Promise((resolve, reject) => {
      const onEvent = (e: QmpEvent) => {
        if (e.event !== name || !accept(e)) return;
        done();
        resolve(e);
      };
      const onClose = (err: Error | undefined) => {
        done();
        reject(err ?? new QmpConnectionError('closed'));
      };
      const timer = setTimeout(() => {
        done();
        reject(new QmpTimeoutError(`waiting for event ${name}`, timeoutMs));
      }, timeoutMs);
      const done = () => {
        clearTimeout(timer);
        this.off('event', onEvent);
        this.off('close', onClose);
      };
      this.on('event', onEvent);
      this.on('close', onClose);
    });
  }

  /** Closes the connection; pending commands reject with QmpConnectionError. QEMU keeps running. */
  close(): void {
    this.shutdown(null);
  }

  private shutdown(reason: Error | null): void {
    if (this.closedWith) return;
    this.closedWith = reason ?? new QmpConnectionError('the client was closed');
    for (const [id, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(this.closedWith);
      this.pending.delete(id);
    }
    this.socket.destroy();
    this.emit('close', reason ?? undefined);
  }

  private onData(chunk: string): void {
    this.buffered += chunk;
    let nl: number;
    while ((nl = this.buffered.indexOf('\n')) !== -1) {
      const line = this.buffered.slice(0, nl).trim();
      this.buffered = this.buffered.slice(nl + 1);
      if (line !== '') this.onLine(line);
      if (this.closedWith) return;
    }
    if (this.buffered.length > MAX_QMP_LINE_BYTES) this.shutdown(new QmpConnectionError('a QMP line exceeds 16 MiB'));
  }

  private onLine(line: string): void {
    let msg: Record<string, unknown>;
    try {
      const parsed: unknown = JSON.parse(line);
      if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new Error('not an object');
      msg = parsed as Record<string, unknown>;
    } catch {
      this.shutdown(new QmpConnectionError(`not a QMP message: ${line.slice(0, 200)}`));
      return;
    }
    if ('QMP' in msg) {
      const greet = this.greeting;
      this.greeting = null;
      greet?.(msg.QMP as Record<string, unknown>);
      return;
    }
    if (typeof msg.event === 'string') {
      this.emit('event', msg as unknown as QmpEvent);
      return;
    }
    const id = msg.id;
    const p = typeof id === 'number' ? this.pending.get(id) : undefined;
    if (!p) return; // a reply to a command that timed out, or without an id: nobody waits for it
    this.pending.delete(id as number);
    clearTimeout(p.timer);
    if ('error' in msg) {
      const e = (msg.error ?? {}) as { class?: unknown; desc?: unknown };
      p.reject(new QmpCommandError(p.command, String(e.class ?? 'GenericError'), String(e.desc ?? '')));
    } else {
      p.resolve(msg.return);
    }
  }
}

function parseVersion(greeting: Record<string, unknown>): QmpClient['version'] {
  const q = (greeting.version as { qemu?: { major?: unknown; minor?: unknown; micro?: unknown } } | undefined)?.qemu;
  if (!q || typeof q.major !== 'number') return null;
  return { major: q.major, minor: Number(q.minor ?? 0), micro: Number(q.micro ?? 0) };
}
