/**
 * The controller's logger: the adapter both apps share (@vmm/logging: JSON lines, or LOG_FORMAT=pretty).
 * Nest's own messages come out as the same lines through nestjs-pino, as in the node agent (LoggerModule
 * in app.module.ts, app.useLogger in main.ts): `context` names Nest's component, `err` carries an error.
 */
import { createLogger as createAppLogger, type LogFormat, type Logger } from '@vmm/logging';

export type { Logger } from '@vmm/logging';

export function createLogger(level: string, format: LogFormat = 'json'): Logger {
  return createAppLogger({ service: 'controller', level, format });
}

/** Injection token of the app's pino logger. */
export const LOGGER = Symbol('LOGGER');
