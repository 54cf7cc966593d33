/**
 * The controller's HTTP port (HTTP_PORT): /metrics for Prometheus, and Kubernetes' probes: /livez (the
 * process answers) and /readyz (it can serve the API: false, saying why, while Redis is unreachable);
 * with `console`, the web console at / and its API at /api/ (console-api.ts, console-assets.ts).
 * Plain node:http: a handful of routes do not need Nest's HTTP stack.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import type { Registry } from 'prom-client';
import type { ConsoleApi } from './console-api.js';
import { serveConsoleAsset } from './console-assets.js';

export interface Readiness {
  /** Undefined when ready, else why not. */
  notReadyReason(): string | undefined;
}

export interface OpsHttpServer {
  port: number;
  close(): Promise<void>;
}

export interface OpsHttpOptions {
  /** The web console's API; without it, / is 404 like any other unknown path. */
  console?: ConsoleApi;
  /** Where the console's built files are (tests); default dist/web. */
  consoleDir?: string;
}

export async function startOpsHttpServer(host: string, port: number, registry: Registry, readiness: Readiness, options: OpsHttpOptions = {}): Promise<OpsHttpServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const text = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (options.console?.handle(req, res)) return;
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed\n');
    if (path === '/livez') return text(200, 'ok\n');
    if (path === '/readyz') {
      const reason = readiness.notReadyReason();
      return reason === undefined ? text(200, 'ok\n') : text(503, `not ready: ${reason}\n`);
    }
    if (path === '/metrics') {
      registry.metrics().then(
        (body) => text(200, body, registry.contentType),
        (err: unknown) => text(500, `metrics failed: ${err instanceof Error ? err.message : String(err)}\n`),
      );
      return;
    }
    if (options.console) {
      void serveConsoleAsset(path ?? '/', res, options.consoleDir);
      return;
    }
    text(404, 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => {
      options.console?.close();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
}
