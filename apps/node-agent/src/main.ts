import 'reflect-metadata';
import { routeProcessWarnings } from '@vmm/tls';
import { startAgent, type RunningAgent } from './agent.js';
import { loadAgentConfig, type AgentConfig } from './config.js';
import { createLogger } from './logger.js';

/** Exit codes: 0 clean shutdown, 1 bad configuration or failed shutdown, 2 failed to start (e.g. port in use). */
async function main(): Promise<void> {
  let config: AgentConfig;
  try {
    config = loadAgentConfig();
  } catch (err) {
    process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
    process.exit(1);
  }
  const log = createLogger(config.logLevel, config.nodeId, config.logFormat);
  routeProcessWarnings((warning) => log.warn({ err: warning }, 'process warning'));
  let agent: RunningAgent | undefined;
  let stopRequested = false;
  const shutdown = (signal: NodeJS.Signals): void => {
    log.info({ signal }, 'shutting down');
    stopRequested = true;
    // Still starting: nothing runs yet that needs a clean stop; the start path exits when done.
    agent?.stop().then(
      () => process.exit(0),
      (err: unknown) => {
        log.error({ err }, 'shutdown failed');
        process.exit(1);
      },
    );
  };
  // Handlers first, so that a signal during start-up is not lost.
  process.once('SIGTERM', shutdown);
  process.once('SIGINT', shutdown);
  // A bug below a handler must not take the node's VMs down with it.
  process.on('unhandledRejection', (reason) => log.error({ err: reason }, 'unhandled rejection'));
  try {
    agent = await startAgent(config, log);
  } catch (err) {
    log.fatal({ err }, 'node agent failed to start');
    process.exit(2);
  }
  if (stopRequested) {
    await agent.stop();
    process.exit(0);
  }
}

void main();
