import { pino, type Logger } from 'pino';
import type { LogLevel } from './config.js';

/**
 * The agent's logger: pino JSON lines on stdout. Nest's own messages come out as the same lines
 * through nestjs-pino, as in the controller (LoggerModule in agent.module.ts, app.useLogger in
 * agent.ts): `context` names Nest's component, `err` carries an error.
 */
export function createLogger(level: LogLevel, nodeId: string): Logger {
  return pino({ level, base: { service: 'node-agent', nodeId } });
}
