import net from 'node:net';

/**
 * Where freePort() picks from: below Linux's ephemeral range (ip_local_port_range, 32768-60999 by
 * default). A port the OS hands out for port 0 is also what it hands out for outgoing connections, so
 * between our check and the child's bind another process's connection (a gRPC channel, a Redis client)
 * could take it; a port below that range is taken only by another listener that chose it.
 */
export const PICK_PORT_MIN = 20_000;
export const PICK_PORT_MAX = 32_767;

/**
 * A TCP port that is free on 127.0.0.1 right now, chosen at random below the ephemeral range. Another
 * process may still take it before the caller binds it; callers that spawn a server on it detect that
 * through the server's exit and may retry.
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  for (let attempt = 0; attempt < 200; attempt++) {
    const port = PICK_PORT_MIN + Math.floor(Math.random() * (PICK_PORT_MAX - PICK_PORT_MIN + 1));
    if (await isPortFree(port, host)) return port;
  }
  return osPickedPort(host);
}

/** A port the OS picks (listen on 0, close): the fallback when the whole range is busy. */
function osPickedPort(host: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.once('error', reject);
    server.listen({ host, port: 0, exclusive: true }, () => {
      const address = server.address();
      if (address === null || typeof address === 'string') {
        server.close();
        reject(new Error(`unexpected listener address ${String(address)}`));
        return;
      }
      server.close((err) => (err ? reject(err) : resolve(address.port)));
    });
  });
}

/** Resolves after `ms` milliseconds; used only between polls of a condition. */
export function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** True when nothing listens on host:port now (we could bind it). */
export function isPortFree(port: number, host = '127.0.0.1'): Promise<boolean> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.unref();
    server.once('error', () => resolve(false));
    server.listen({ host, port, exclusive: true }, () => server.close(() => resolve(true)));
  });
}
