#!/usr/bin/env node
// `npm run cluster -- --agents N --port P [--token T] [--supervise] …` (args.ts has every option): a
// whole cluster on loopback in the foreground, until SIGINT/SIGTERM. A process of the cluster that dies
// is one line on stderr; under --supervise it is restarted, otherwise the rest goes on without it.
import { parseClusterArgs, USAGE, UsageError, type ClusterArgs } from './args.js';
import { startCluster, type LocalCluster } from './cluster.js';
import { onTerminationSignal, stopAll } from './processes.js';
import { routeProcessWarnings } from '@vmm/tls';
import { describeProcessEvent } from './supervised-process.js';

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

function readyLine(c: LocalCluster, args: ClusterArgs): string {
  const nodes = c.agents.map((a) => `${a.nodeId}@${a.address}`).join(' ');
  const security = c.insecure ? 'agent plane INSECURE (plaintext)' : `agent plane mutual TLS, certificates in ${c.certsDir}`;
  const extras = [security, c.apiTls ? 'API over TLS (verify with ca.pem)' : '', args.token ? 'token required' : '', args.supervise ? 'supervised' : '']
    .filter(Boolean)
    .map((s) => `; ${s}`)
    .join('');
  return `cluster ready: controller ${c.controllerAddress} (${c.agents.length} agents: ${nodes}; redis ${c.redisUrl} prefix ${c.prefix}${extras})`;
}

/** Every process with its pid (chaos tools and tests use them), and where the cluster keeps its files. */
function processesLine(c: LocalCluster): string {
  const list = c.processes().map((p) => `${p.name} pid ${p.pid} ${p.address}`);
  return `processes: ${list.join(', ')}; files in ${c.tempDir}`;
}

async function main(): Promise<void> {
  routeProcessWarnings((warning) => process.stderr.write(`warning: ${warning.message}\n`));
  let args: ClusterArgs;
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

  if (args.insecure) process.stderr.write('warning: --insecure: the agent plane (controller <-> agents, agent <-> agent) is plaintext\n');
  process.stderr.write(
    `starting Redis, a controller on 127.0.0.1:${args.port} and ${args.agents} agents${args.supervise ? ' (supervised)' : ''}…\n`,
  );
  cluster = await startCluster({
    agents: args.agents,
    port: args.port,
    token: args.token,
    readToken: args.readToken,
    nodeMemoryMib: args.nodeMemoryMib,
    nodeVcpus: args.nodeVcpus,
    reportIntervalMs: args.reportIntervalMs,
    supervise: args.supervise,
    httpPort: args.httpPort,
    hypervisor: args.hypervisor,
    certsDir: args.certsDir,
    insecure: args.insecure,
    apiTls: args.apiTls,
    logLevel: process.env.LOG_LEVEL ?? (args.verbose ? 'info' : 'warn'),
    onLine: echo(args.verbose),
    onProcessEvent: (event) => {
      if (!shuttingDown) process.stderr.write(`${describeProcessEvent(event)}\n`);
    },
  });
  if (shuttingDown) return;
  process.stdout.write(`${readyLine(cluster, args)}\n${processesLine(cluster)}\n`);
  // Until SIGINT/SIGTERM, whatever dies: the children's pipes close with them, so hold the event loop.
  setInterval(() => {}, 1 << 30);
}

main().catch(async (err: unknown) => {
  process.stderr.write(`${err instanceof Error ? err.message : String(err)}\n`);
  await stopAll();
  process.exit(1);
});
