import type { LoggerService } from '@nestjs/common';
import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

/** The agent's logger: pino JSON lines on stdout. */
export function createLogger(level: LogLevel, nodeId: string): Logger {
  return pino({ level, base: { service: 'node-agent', nodeId } });
}

/** Routes Nest's own log lines into pino, so that stdout carries JSON only. */
export class NestPinoLogger implements LoggerService {
  constructor(private readonly target: Logger) {}

  private write(level: 'info' | 'error' | 'warn' | 'debug' | 'trace', message: unknown, params: unknown[]): void {
    // Nest passes the context as the last string argument; an error stack may precede it.
    const context = typeof params.at(-1) === 'string' ? (params.at(-1) as string) : undefined;
    const text = typeof message === 'string' ? message : JSON.stringify(message);
    this.target[level]({ context }, text);
  }

  log(message: unknown, ...params: unknown[]): void {
    this.write('info', message, params);
  }
  error(message: unknown, ...params: unknown[]): void {
    this.write('error', message, params);
  }
  warn(message: unknown, ...params: unknown[]): void {
    this.write('warn', message, params);
  }
  debug(message: unknown, ...params: unknown[]): void {
    this.write('debug', message, params);
  }
  verbose(message: unknown, ...params: unknown[]): void {
    this.write('trace', message, params);
  }
}
