/**
 * TCP helpers for the agents: the target listens for exactly one sender presenting the right token;
 * the source connects. Connections that fail the HELLO checks get an ERROR frame and are closed; the
 * listener keeps waiting for the right one until its timeout.
 *
 * Before its HELLO a connection has proved nothing, so what it can cost is bounded: a few such
 * connections per listener and per process (more are closed at once), a HELLO deadline, a read buffer
 * and a parser that hold one HELLO (4 KiB), and a HELLO decoded strictly (wire/hello.ts). No handler
 * here throws out to the event loop: a bad connection is closed, the listener and the process go on.
 */
import net from 'node:net';
import tls from 'node:tls';
import { once } from 'node:events';
import {
  DEFAULT_HELLO_TIMEOUT_MS,
  DEFAULT_MAX_PENDING_PER_LISTENER,
  DEFAULT_MAX_PENDING_PER_PROCESS,
  PRE_HELLO_READ_BYTES,
} from './data-plane-limits.js';
import { ConnectionLostError, MigrationCancelledError, ProtocolError, TokenMismatchError } from './errors.js';
import { PendingConnectionBudget } from './pending-budget.js';
import { readTargetOf } from './read-target.js';
import { MAX_TIMER_MS } from './session.js';
import { tokenMatches } from './token.js';
import { boundedText } from './bounded-text.js';
import { FrameParser, encodeError } from './wire/codec.js';
import { FrameType, SOCKET_READ_BUFFER_BYTES, type HelloPayload } from './wire/frame.js';
import { decodeHello } from './wire/hello.js';

/** The connections waiting for their HELLO on all listeners of this process, unless a listener is given its own. */
export const processPendingBudget = new PendingConnectionBudget(DEFAULT_MAX_PENDING_PER_PROCESS);

/**
 * Mutual TLS on the data connection (docs/design.md, Security): both ends present certificates of the
 * cluster CA, and `checkPeer` says whether the verified peer is who this end expects (a node of the
 * cluster; the per-migration token is checked on top). Without it the connection is plain TCP.
 */
export interface DataPlaneTls {
  ca: Buffer;
  cert: Buffer;
  key: Buffer;
  /** Why the verified peer certificate is refused, or undefined to accept it. */
  checkPeer?(cert: tls.PeerCertificate): string | undefined;
  /** The peer's certificate subject (`CN=node-1`), for channels that check it by name (QEMU's tls-authz). */
  peerSubject?: string;
}

export interface ListenOptions {
  /** Address to bind; 127.0.0.1 unless the agent says otherwise. */
  host?: string;
  /** 0 = any free port. */
  port?: number;
  token: string;
  migrationId: string;
  /** Rejects `accept` when no valid sender connected in time; 0 = never. Default 60 s. */
  acceptTimeoutMs?: number;
  /** A connection must present its HELLO within this time. Default DEFAULT_HELLO_TIMEOUT_MS (5 s). */
  helloTimeoutMs?: number;
  /** Connections this listener holds before their HELLO; more are closed at once. Default 4. */
  maxPendingConnections?: number;
  /** Shared by the process's listeners (default processPendingBudget: 64); a connection needs a slot in both. */
  pendingBudget?: PendingConnectionBudget;
  signal?: AbortSignal;
  tls?: DataPlaneTls;
}

export interface AcceptedConnection {
  connection: net.Socket;
  /** Already decoded, bounded and token-checked: pass it to MigrationReceiver.run(connection, hello). */
  hello: HelloPayload;
}

export interface IncomingListener {
  port: number;
  /** host:port for the sender. */
  address: string;
  accept: Promise<AcceptedConnection>;
  /** Connections holding one of this listener's slots before their HELLO (a slot is given back when the connection has closed). */
  readonly pendingConnections: number;
  /** Stops listening (idempotent); a pending accept rejects. */
  close(): void;
}

/** How long a refused connection keeps its socket open for its ERROR frame to leave. */
const REFUSED_LINGER_MS = 1000;

export async function listenForIncoming(opts: ListenOptions): Promise<IncomingListener> {
  const host = opts.host ?? '127.0.0.1';
  const helloTimeoutMs = Math.min(opts.helloTimeoutMs ?? DEFAULT_HELLO_TIMEOUT_MS, MAX_TIMER_MS);
  const own = new PendingConnectionBudget(opts.maxPendingConnections ?? DEFAULT_MAX_PENDING_PER_LISTENER);
  const shared = opts.pendingBudget ?? processPendingBudget;
  // Paused on connect so that the handle can be re-wrapped to read into its own buffer before any read.
  const server = net.createServer({ noDelay: true, pauseOnConnect: true });
  const sockets = new Set<net.Socket>();
  let settle!: { resolve(c: AcceptedConnection): void; reject(e: Error): void };
  const accept = new Promise<AcceptedConnection>((resolve, reject) => (settle = { resolve, reject }));
  accept.catch(() => undefined); // the caller may never await it after close()
  let done = false;
  const finish = (err: Error | null, value?: AcceptedConnection) => {
    if (done) return;
    done = true;
    clearTimeout(timer);
    opts.signal?.removeEventListener('abort', onAbort);
    server.close();
    for (const s of sockets) if (s !== value?.connection) s.destroy();
    if (err) settle.reject(err);
    else settle.resolve(value!);
  };
  const onAbort = () => finish(new MigrationCancelledError(opts.migrationId, 'listener aborted'));
  const acceptTimeoutMs = opts.acceptTimeoutMs ?? 60_000;
  const timer = setTimeout(
    () => finish(new ConnectionLostError(opts.migrationId, `no sender connected within ${acceptTimeoutMs} ms`)),
    acceptTimeoutMs > 0 ? Math.min(acceptTimeoutMs, MAX_TIMER_MS) : MAX_TIMER_MS,
  );
  timer.unref();

  const expected = { token: opts.token, migrationId: opts.migrationId };
  server.on('connection', (accepted: net.Socket) => {
    accepted.on('error', () => undefined);
    try {
      if (done || !own.tryTake()) return void accepted.destroy();
      if (!shared.tryTake()) {
        own.give();
        return void accepted.destroy();
      }
      let held = true;
      const release = () => {
        if (!held) return;
        held = false;
        own.give();
        shared.give();
      };
      // The handshake counts against the HELLO deadline and the pending budget like the HELLO itself.
      const pending = opts.tls ? securedServerSide(accepted, opts.tls) : readingIntoOwnBuffer(accepted);
      pending.socket.once('close', release);
      waitForHello(pending, expected, helloTimeoutMs, sockets, (connection, hello) => {
        release(); // handed over: it no longer waits for its HELLO
        finish(null, { connection, hello });
      });
    } catch {
      accepted.destroy();
    }
  });
  // After 'listening': an accept error (EMFILE, …) must not end the process; the listener keeps its timeout.
  const onServerError = () => undefined;

  if (opts.signal?.aborted) throw new MigrationCancelledError(opts.migrationId, 'listener aborted');
  opts.signal?.addEventListener('abort', onAbort, { once: true });
  server.listen(opts.port ?? 0, host);
  try {
    await once(server, 'listening');
  } catch (err) {
    finish(err instanceof Error ? err : new Error(String(err)));
    throw err;
  }
  server.on('error', onServerError);
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    address: `${host.includes(':') ? `[${host}]` : host}:${port}`,
    accept,
    get pendingConnections() {
      return own.inUse;
    },
    close: () => finish(new ConnectionLostError(opts.migrationId, 'listener closed')),
  };
}

/**
 * Reads one connection's HELLO (within `helloTimeoutMs`); a valid one with the right token and
 * migration hands the paused connection to `onHello`, anything else is answered with ERROR and closed.
 */
function waitForHello(
  pending: OwnBufferSocket,
  expected: { token: string; migrationId: string },
  helloTimeoutMs: number,
  sockets: Set<net.Socket>,
  onHello: (connection: net.Socket, hello: HelloPayload) => void,
): void {
  const socket = pending.socket;
  sockets.add(socket);
  socket.on('error', () => undefined);
  socket.on('close', () => sockets.delete(socket));
  const refuse = (error: Error) => {
    clearTimeout(helloTimer);
    socket.off('data', onData);
    const code = (error as { code?: string }).code ?? 'PROTOCOL_ERROR';
    try {
      socket.end(encodeError({ code, message: error.message }));
    } finally {
      setTimeout(() => socket.destroy(), REFUSED_LINGER_MS).unref();
    }
  };
  const helloTimer = setTimeout(() => refuse(new ProtocolError(`no HELLO within ${helloTimeoutMs} ms`)), helloTimeoutMs);
  helloTimer.unref();
  const parser = new FrameParser(
    {
      onPage: () => undefined,
      onFrame: (_type, payload) => {
        const hello = decodeHello(payload);
        if (!tokenMatches(expected.token, hello.token)) throw new TokenMismatchError(expected.migrationId);
        if (hello.migrationId !== expected.migrationId) throw new ProtocolError(`HELLO for migration ${boundedText(hello.migrationId)}`);
        clearTimeout(helloTimer);
        socket.off('data', onData);
        socket.pause();
        if (!parser.idle) throw new ProtocolError('data after HELLO before HELLO_ACK');
        // Authenticated: from now on the stream may read 256 KiB at a time (and into guest frames).
        pending.useStreamBuffer();
        onHello(socket, hello);
      },
    },
    new Set([FrameType.HELLO]),
  );
  const onData = (chunk: Buffer) => {
    try {
      parser.push(chunk);
    } catch (err) {
      refuse(err instanceof Error ? err : new ProtocolError(String(err)));
    }
  };
  socket.on('data', onData);
  socket.resume();
}

/**
 * The accepted connection as the server end of a mutual-TLS session: a client without a certificate of
 * the CA fails the handshake, one whose certificate `checkPeer` refuses is closed before any frame is
 * read. Reads go through Node's TLS stream (decryption copies anyway; no own read buffer).
 */
function securedServerSide(accepted: net.Socket, options: DataPlaneTls): OwnBufferSocket {
  return { socket: secureAcceptedSocket(accepted, options), useStreamBuffer: () => undefined };
}

/** How long a data connection may take for its TLS handshake (loopback: a few ms; a WAN: < 1 s). */
export const TLS_HANDSHAKE_TIMEOUT_MS = 2_000;

/**
 * The server end of mutual TLS over a socket a net.Server accepted (also for other agent-to-agent
 * channels, e.g. the QEMU driver's): verified against the CA and `checkPeer`, or destroyed.
 */
export function secureAcceptedSocket(accepted: net.Socket, options: DataPlaneTls): tls.TLSSocket {
  const secure = new tls.TLSSocket(accepted, {
    isServer: true,
    secureContext: tls.createSecureContext({ ca: options.ca, cert: options.cert, key: options.key }),
    requestCert: true,
    rejectUnauthorized: true,
  });
  secure.on('error', () => undefined);
  // The handshake gets its own short deadline: a client that connects and says nothing frees its
  // pending slot long before the HELLO deadline would.
  const handshakeTimer = setTimeout(() => secure.destroy(), TLS_HANDSHAKE_TIMEOUT_MS);
  handshakeTimer.unref();
  secure.once('close', () => clearTimeout(handshakeTimer));
  secure.once('secure', () => {
    clearTimeout(handshakeTimer);
    try {
      // A TLSSocket made by hand (not by tls.Server) neither enforces rejectUnauthorized for a client
      // certificate that is present but unverified (another CA) nor sets `authorized`: ask OpenSSL.
      const verifyError = (secure as unknown as { ssl?: { verifyError(): Error | null } }).ssl?.verifyError();
      if (verifyError !== null) return void secure.destroy();
      const refusal = options.checkPeer?.(secure.getPeerCertificate());
      if (refusal !== undefined) secure.destroy();
    } catch {
      secure.destroy();
    }
  });
  accepted.resume();
  return secure;
}

/** Bytes per socket read on the receiving end once the HELLO was accepted. */
const READ_BUFFER_BYTES = SOCKET_READ_BUFFER_BYTES;

interface OwnBufferSocket {
  socket: net.Socket;
  /** After HELLO: reads of up to READ_BUFFER_BYTES (allocated now, not for connections that never get this far). */
  useStreamBuffer(): void;
}

/**
 * The accepted connection re-wrapped so that every read lands in one reused buffer (net.Socket's
 * `onread`), re-emitted as 'data' chunks valid during the event only (the frame parser copies what it
 * keeps). Node's default read path allocates a fresh 64 KiB buffer per read: on loopback that costs the
 * receiver 2–3× the CPU of the copy itself (measured: 1 GiB 0.83 → 0.31 CPU-s), and the receiver's CPU
 * sets the pace of a migration. Until HELLO the buffer holds one HELLO frame. net.Server has no `onread`
 * option, hence the handle transfer; if the handle is not where Node keeps it, the socket is used as it is.
 */
function readingIntoOwnBuffer(accepted: net.Socket): OwnBufferSocket {
  const holder = accepted as unknown as { _handle: unknown };
  const handle = holder._handle;
  if (handle === null || typeof handle !== 'object') {
    accepted.resume();
    return { socket: accepted, useStreamBuffer: () => undefined };
  }
  holder._handle = null; // the accepted wrapper must not close or read the handle any more
  let buffer = Buffer.allocUnsafe(PRE_HELLO_READ_BYTES);
  let socket: net.Socket | null = null;
  socket = new net.Socket({
    handle: handle as never,
    readable: true,
    writable: true,
    onread: {
      // Node asks a function for the buffer of every next read (Node 20): a reader registered with
      // setReadTarget may point it elsewhere, e.g. into guest frames. Called by Node: must not throw.
      buffer: () => {
        try {
          return (socket === null ? null : readTargetOf(socket)?.(buffer)) ?? buffer;
        } catch {
          return buffer;
        }
      },
      callback: (bytes: number, buf: Uint8Array) => {
        try {
          socket!.emit('data', buf.subarray(0, bytes));
        } catch (err) {
          // Every 'data' listener here catches its own errors; this is the last line.
          socket!.destroy(err instanceof Error ? err : new Error(String(err)));
          return false;
        }
        return true;
      },
    },
  } as net.SocketConstructorOpts);
  socket.on('error', () => undefined);
  socket.pause(); // reading starts when a consumer resumes it
  return {
    socket,
    useStreamBuffer: () => {
      if (buffer.length < READ_BUFFER_BYTES) buffer = Buffer.allocUnsafe(READ_BUFFER_BYTES);
    },
  };
}

/** Splits "host:port" or "[v6]:port". */
export function parseAddress(address: string): { host: string; port: number } {
  const m = /^\[?([^\]]*)\]?:(\d+)$/.exec(address);
  const port = m ? Number(m[2]) : NaN;
  if (!m || !m[1] || !(port > 0 && port < 65536)) throw new ProtocolError(`bad data address '${boundedText(address)}'`);
  return { host: m[1], port };
}

/** Connects to a target's data listener. */
export async function connectOutgoing(
  address: string,
  opts: { signal?: AbortSignal; timeoutMs?: number; migrationId?: string; tls?: DataPlaneTls } = {},
): Promise<net.Socket> {
  const { host, port } = parseAddress(address);
  const secure = opts.tls;
  const socket = secure
    ? tls.connect({
        host,
        port,
        timeout: opts.timeoutMs ?? 10_000,
        ca: secure.ca,
        cert: secure.cert,
        key: secure.key,
        // The target's certificate must name the address dialled (IP or DNS SAN), as for gRPC.
        ...(net.isIP(host) ? {} : { servername: host }),
      })
    : net.connect({ host, port, noDelay: true, timeout: opts.timeoutMs ?? 10_000 });
  const onTimeout = () => socket.destroy(new Error(`connect to ${address} timed out`));
  socket.once('timeout', onTimeout);
  try {
    await once(socket, secure ? 'secureConnect' : 'connect', { signal: opts.signal });
    if (secure && socket instanceof tls.TLSSocket) {
      socket.setNoDelay(true);
      const refusal = secure.checkPeer?.(socket.getPeerCertificate());
      if (refusal !== undefined) throw new Error(`the data listener at ${address} is not the target: ${refusal}`);
    }
    return socket;
  } catch (err) {
    socket.destroy();
    throw new ConnectionLostError(opts.migrationId ?? '?', err instanceof Error ? err.message : String(err));
  } finally {
    socket.off('timeout', onTimeout);
    socket.setTimeout(0);
  }
}
