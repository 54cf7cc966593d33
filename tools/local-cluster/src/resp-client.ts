import net from 'node:net';
import { RedisProtocolError } from './errors.js';

/** A decoded RESP2 reply: simple/bulk strings, integers, nil, arrays. Error replies reject instead. */
export type RespValue = string | number | null | RespValue[];

interface Pending {
  resolve: (value: RespValue) => void;
  reject: (err: Error) => void;
}

/**
 * The smallest Redis client the launcher needs (PING, SCAN, DEL): the launcher and the test
 * support code stay free of a Redis library, and it works against any redis:// URL.
 */
export class RespClient {
  private buffer: Buffer = Buffer.alloc(0);
  private readonly pending: Pending[] = [];
  private closedError: Error | null = null;

  private constructor(private readonly socket: net.Socket) {
    socket.on('data', (chunk) => this.onData(chunk));
    socket.on('error', (err) => this.failAll(err));
    socket.on('close', () => this.failAll(new Error('redis connection closed')));
  }

  /** Connects to `redis://[user:password@]host:port[/db]`, authenticates and selects the db if given. */
  static async connect(url: string, timeoutMs = 2000): Promise<RespClient> {
    const parsed = new URL(url);
    const port = Number(parsed.port || 6379);
    const host = parsed.hostname || '127.0.0.1';
    const socket = await new Promise<net.Socket>((resolve, reject) => {
      const s = net.connect({ host, port });
      const timer = setTimeout(() => {
        s.destroy();
        reject(new Error(`connect to ${host}:${port} timed out after ${timeoutMs} ms`));
      }, timeoutMs);
      s.once('connect', () => {
        clearTimeout(timer);
        resolve(s);
      });
      s.once('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
    });
    const client = new RespClient(socket);
    if (parsed.password) {
      const user = decodeURIComponent(parsed.username);
      const password = decodeURIComponent(parsed.password);
      await client.command(...(user ? ['AUTH', user, password] : ['AUTH', password]));
    }
    const db = parsed.pathname.replace(/^\//, '');
    if (db) await client.command('SELECT', db);
    return client;
  }

  command(...args: string[]): Promise<RespValue> {
    if (this.closedError) return Promise.reject(this.closedError);
    let out = `*${args.length}\r\n`;
    for (const a of args) out += `$${Buffer.byteLength(a)}\r\n${a}\r\n`;
    return new Promise((resolve, reject) => {
      this.pending.push({ resolve, reject });
      this.socket.write(out);
    });
  }

  close(): void {
    this.closedError ??= new Error('redis client closed');
    this.socket.end();
    this.socket.destroy();
  }

  private failAll(err: Error): void {
    this.closedError ??= err;
    for (const p of this.pending.splice(0)) p.reject(err);
  }

  private onData(chunk: Buffer): void {
    this.buffer = this.buffer.length ? Buffer.concat([this.buffer, chunk]) : chunk;
    for (;;) {
      const parsed = parseReply(this.buffer, 0);
      if (parsed === undefined) return;
      this.buffer = this.buffer.subarray(parsed.end);
      const waiter = this.pending.shift();
      if (!waiter) continue;
      if (parsed.value instanceof Error) waiter.reject(parsed.value);
      else waiter.resolve(parsed.value);
    }
  }
}

/** Parses one reply at `offset`; undefined when the buffer does not hold a whole reply yet. */
function parseReply(buf: Buffer, offset: number): { value: RespValue | Error; end: number } | undefined {
  const lineEnd = buf.indexOf('\r\n', offset);
  if (lineEnd < 0) return undefined;
  const type = String.fromCharCode(buf[offset]!);
  const line = buf.toString('utf8', offset + 1, lineEnd);
  const next = lineEnd + 2;
  switch (type) {
    case '+':
      return { value: line, end: next };
    case '-':
      return { value: new RedisProtocolError(line), end: next };
    case ':':
      return { value: Number(line), end: next };
    case '$': {
      const len = Number(line);
      if (len < 0) return { value: null, end: next };
      if (buf.length < next + len + 2) return undefined;
      return { value: buf.toString('utf8', next, next + len), end: next + len + 2 };
    }
    case '*': {
      const count = Number(line);
      if (count < 0) return { value: null, end: next };
      const items: RespValue[] = [];
      let at = next;
      for (let i = 0; i < count; i++) {
        const item = parseReply(buf, at);
        if (item === undefined) return undefined;
        if (item.value instanceof Error) return { value: item.value, end: item.end };
        items.push(item.value);
        at = item.end;
      }
      return { value: items, end: at };
    }
    default:
      throw new RedisProtocolError(`unexpected reply type ${JSON.stringify(type)}`);
  }
}

/** True when a Redis at `url` answers PING with PONG. */
export async function pingRedis(url: string, timeoutMs = 1000): Promise<boolean> {
  let client: RespClient | undefined;
  try {
    client = await RespClient.connect(url, timeoutMs);
    return (await client.command('PING')) === 'PONG';
  } catch {
    return false;
  } finally {
    client?.close();
  }
}

/**
 * Deletes every key matching `${prefix}:*` (and the bare `prefix`) with SCAN + DEL, never KEYS, so
 * a shared Redis is not blocked. Returns how many keys were removed.
 */
export async function deleteKeysWithPrefix(url: string, prefix: string): Promise<number> {
  if (!prefix) throw new Error('refusing to delete keys with an empty prefix');
  const client = await RespClient.connect(url);
  try {
    let removed = Number(await client.command('DEL', prefix));
    let cursor = '0';
    do {
      const reply = (await client.command('SCAN', cursor, 'MATCH', `${escapeGlob(prefix)}:*`, 'COUNT', '500')) as [
        string,
        string[],
      ];
      cursor = reply[0];
      if (reply[1].length) removed += Number(await client.command('DEL', ...reply[1]));
    } while (cursor !== '0');
    return removed;
  } finally {
    client.close();
  }
}

/** Counts the keys under `${prefix}:*` (tests use it to check cleanup). */
export async function countKeysWithPrefix(url: string, prefix: string): Promise<number> {
  const client = await RespClient.connect(url);
  try {
    let count = 0;
    let cursor = '0';
    do {
      const reply = (await client.command('SCAN', cursor, 'MATCH', `${escapeGlob(prefix)}:*`, 'COUNT', '500')) as [
        string,
        string[],
      ];
      cursor = reply[0];
      count += reply[1].length;
    } while (cursor !== '0');
    return count;
  } finally {
    client.close();
  }
}

function escapeGlob(s: string): string {
  return s.replace(/[*?[\]\\]/g, (c) => `\\${c}`);
}
