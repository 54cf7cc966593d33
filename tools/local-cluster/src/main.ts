#!/usr/bin/env node
// `npm run cluster -- --agents N --port P [--token T] [--node-memory-mib M] [--node-vcpus C]`:
// a whole cluster on loopback in the foreground, until SIGINT/SIGTERM.
import { parseClusterArgs, USAGE, UsageError } from './args.js';
import { startCluster, type LocalCluster } from './cluster.js';
import { delay } from './ports.js';
import { onTerminationSignal, stopAll } from './processes.js';

const WARN_LEVELS = new Set([40, 50, 60]); // pino: warn, error, fatal

function echo(verbose: boolean) {
  return (name: string, line: string, stream: 'stdout' | 'stderr') => {
    if (!verbose && stream === 'stdout') {
      // Children log pino JSON lines; without --verbose only warnings and worse reach the terminal.
      try {
        const level = (JSON.parse(line) as { level?: number }).level;
        if (level !== undefined && !WARN_LEVELS.has(level)) return;
      } catch {
        // not JSON: show it
      }
      if (name === 'redis') return;
    }
    process.stderr.write(`[${name}] ${line}\n`);
  };
}

async function main(): Promise<void> {
  let args;
  try {
    args = parseClusterArgs(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`${err.message}\n${USAGE}\n`);
      process.exit(2);
    }
    throw err;
  }
  if (args.help) {
    process.stdout.write(`${USAGE}\n`);
    return;
  }

  let cluster: LocalCluster | undefined;
  let shuttingDown = false;
  onTerminationSignal(async (signal) => {
    shuttingDown = true;
    process.stderr.write(`${signal}: stopping the cluster\n`);
    try {
      if (cluster) await cluster.stop();
      await stopAll();
    } finally {
      process.exit(0);
    }
  });

  process.stderr.write(`starting Redis, a controller on 127.0.0.1:${args.port} and ${args.agents} agents…\n`);
  cluster = await startCluster({
    agents: args.agents,
    port: args.port,
    token: args.token,
    nodeMemoryMib: args.nodeMemoryMib,
    nodeVcpus: args.nodeVcpus,
    reportIntervalMs: args.reportIntervalMs,
    logLevel: process.env.LOG_LEVEL ?? (args.verbose ? 'info' : 'warn'),
    onLine: echo(args.verbose),
  });
  if (shuttingDown) return;
  const nodes = cluster.agents.map((a) => `${a.nodeId}@${a.address}`).join(' ');
  process.stdout.write(
    `cluster ready: controller ${cluster.controllerAddress} (${cluster.agents.length} agents: ${nodes}; ` +
      `redis ${cluster.redisUrl} prefix ${cluster.prefix}${args.token ? '; token required' : ''})\n`,
  );

  // A child that dies on its own leaves a broken cluster: say so and stop the rest.
  const all = [cluster.controller, ...cluster.agents.map((a) => a.process)];
  await Promise.race(all.map((p) => p.exited.then((s) => ({ p, s }))))
    .then(async ({ p, s }) => {
      // Ctrl-C reaches the children too (same process group): give our own SIGINT handler a moment.
      await delay(500);
      if (shuttingDown) return;
      process.stderr.write(`${p.name} exited (code ${s.code}, signal ${s.signal}); stopping the cluster\n${p.output()}\n`);
      await cluster!.stop();
      process.exit(1);
    });
}

main().catch(async (err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  await stopAll();
  process.exit(1);
});
