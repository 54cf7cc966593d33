import { createLogger as createAppLogger, type LogFormat, type Logger } from '@vmm/logging';
import type { LogLevel } from './config.js';

/**
 * The agent's logger: the adapter both apps share (@vmm/logging: JSON lines, or LOG_FORMAT=pretty),
 * every line naming the node. Nest's own messages come out as the same lines through nestjs-pino, as in
 * the controller (LoggerModule in agent.module.ts, app.useLogger in agent.ts): `context` names Nest's
 * component, `err` carries an error.
 */
export function createLogger(level: LogLevel, nodeId: string, format: LogFormat = 'json'): Logger {
  return createAppLogger({ service: 'node-agent', level, format, base: { nodeId } });
}
