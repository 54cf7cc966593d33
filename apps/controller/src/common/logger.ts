/**
 * pino JSON logging to stdout, plus an adapter so Nest's own messages come out as the same JSON lines.
 */
import type { LoggerService } from '@nestjs/common';
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'controller' } });
}

/** Injection token of the app's pino logger. */
export const LOGGER = Symbol('LOGGER');

export class NestPinoLogger implements LoggerService {
  constructor(private readonly logger: Logger) {}

  // Nest calls these with (message, ...optionalParams) where the last string is the context.
  log(message: unknown, ...rest: unknown[]): void {
    this.logger.info(this.fields(rest), String(message));
  }
  error(message: unknown, ...rest: unknown[]): void {
    this.logger.error(this.fields(rest), String(message));
  }
  warn(message: unknown, ...rest: unknown[]): void {
    this.logger.warn(this.fields(rest), String(message));
  }
  debug(message: unknown, ...rest: unknown[]): void {
    this.logger.debug(this.fields(rest), String(message));
  }
  verbose(message: unknown, ...rest: unknown[]): void {
    this.logger.trace(this.fields(rest), String(message));
  }
  fatal(message: unknown, ...rest: unknown[]): void {
    this.logger.fatal(this.fields(rest), String(message));
  }

  private fields(rest: unknown[]): Record<string, unknown> {
    const context = rest.length > 0 && typeof rest[rest.length - 1] === 'string' ? rest[rest.length - 1] : undefined;
    const stack = rest.length > 1 && typeof rest[0] === 'string' ? rest[0] : undefined;
    return { nest: context, ...(stack ? { stack } : {}) };
  }
}
