/**
 * pino JSON logging to stdout. Nest's own messages come out as the same JSON lines through
 * nestjs-pino, as in the node agent (LoggerModule in app.module.ts, app.useLogger in main.ts):
 * `context` names Nest's component, `err` carries an error.
 */
import { pino, type Logger } from 'pino';

export type { Logger } from 'pino';

export function createLogger(level: string): Logger {
  return pino({ level, base: { service: 'controller' } });
}

/** Injection token of the app's pino logger. */
export const LOGGER = Symbol('LOGGER');
