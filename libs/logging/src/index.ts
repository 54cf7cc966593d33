/**
 * The one logger adapter of both apps (controller, node agent): pino with the same fields everywhere
 * (`service`, and what the app adds to `base`, e.g. the agent's `nodeId`; `err` for an error; Nest's
 * lines get `context` through nestjs-pino), written as JSON lines, or, with LOG_FORMAT=pretty, as
 * coloured lines for people (pino-pretty, in-process and synchronous: no worker thread, nothing lost at
 * exit). And the access line every RPC gets: logAccess().
 */
import { pino, type DestinationStream, type Logger } from 'pino';
import pretty from 'pino-pretty';

export type { Logger } from 'pino';

export const LOG_FORMATS = ['json', 'pretty'] as const;
export type LogFormat = (typeof LOG_FORMATS)[number];

/** LOG_FORMAT's value ('' means json); undefined when it names no format. */
export function parseLogFormat(value: string | undefined): LogFormat | undefined {
  const v = (value ?? '').trim().toLowerCase() || 'json';
  return (LOG_FORMATS as readonly string[]).includes(v) ? (v as LogFormat) : undefined;
}

export interface LoggerOptions {
  /** `service` of every line: `controller`, `node-agent`. */
  service: string;
  /** pino level: fatal, error, warn, info, debug, trace, silent. */
  level: string;
  format?: LogFormat;
  /** More fields on every line (the agent's `nodeId`). */
  base?: Record<string, string>;
  /** Where lines go; default stdout. */
  destination?: DestinationStream;
}

export function createLogger(options: LoggerOptions): Logger {
  const pinoOptions = { level: options.level, base: { service: options.service, ...options.base } };
  if (options.format === 'pretty') {
    return pino(pinoOptions, pretty({ colorize: process.stdout.isTTY ?? false, sync: true, translateTime: 'SYS:HH:MM:ss.l', destination: options.destination ?? 1 }));
  }
  return options.destination ? pino(pinoOptions, options.destination) : pino(pinoOptions);
}

/** What the access line of one RPC says. */
export interface AccessEntry {
  /** The full method path, `/cluster.v1.ClusterService/GetVm`. */
  method: string;
  /** The status code's name: OK, NOT_FOUND, … */
  status: string;
  latencyMs: number;
  peer: string;
  /** `x-request-id` of the call's metadata, when it had one. */
  requestId?: string;
}

/** One line per RPC, the same in both apps: msg `rpc`, `access: true`, and the entry's fields. */
export function logAccess(logger: Logger, entry: AccessEntry): void {
  logger.info({ access: true, method: entry.method, status: entry.status, latencyMs: Math.round(entry.latencyMs * 10) / 10, peer: entry.peer, requestId: entry.requestId || undefined }, 'rpc');
}
