import { parseArgs } from 'node:util';

/** What `npm run cluster -- …` accepts (docs/api.md, "A local cluster for clients and tests"). */
export interface ClusterArgs {
  agents: number;
  port: number;
  token: string | undefined;
  nodeMemoryMib: number;
  nodeVcpus: number;
  reportIntervalMs: number | undefined;
  verbose: boolean;
  help: boolean;
}

export const USAGE = `usage: npm run cluster -- [--agents N] [--port P] [--token T] [--node-memory-mib M] [--node-vcpus C]
                           [--report-interval-ms I] [--verbose]
  --agents N             node agents to start (default 3), named node-1 … node-N
  --port P               the controller's port on 127.0.0.1 (default 50051)
  --token T              require "authorization: Bearer T" on every ClusterService call
  --node-memory-mib M    memory each node registers (default 8192)
  --node-vcpus C         vCPUs each node registers (default 8)
  --report-interval-ms I agent report interval (default 1000)
  --verbose              echo every process's log lines (default: warnings and errors only)
Redis: REDIS_URL if set (its keys under a unique prefix are removed on exit), else a private redis-server.`;

/** Thrown for a bad command line; main prints it with the usage and exits 2. */
export class UsageError extends Error {
  readonly code = 'USAGE';
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}

function positiveInt(name: string, value: string | undefined, fallback: number, min = 1, max = 1 << 30): number {
  if (value === undefined) return fallback;
  const n = Number(value);
  if (!Number.isInteger(n) || n < min || n > max) throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  return n;
}

export function parseClusterArgs(argv: readonly string[]): ClusterArgs {
  let values;
  try {
    ({ values } = parseArgs({
      args: [...argv],
      strict: true,
      allowPositionals: false,
      options: {
        agents: { type: 'string' },
        port: { type: 'string' },
        token: { type: 'string' },
        'node-memory-mib': { type: 'string' },
        'node-vcpus': { type: 'string' },
        'report-interval-ms': { type: 'string' },
        verbose: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  if (values.token !== undefined && values.token.trim() === '') throw new UsageError('--token must not be empty');
  if (values.token !== undefined && values.token.includes(',')) throw new UsageError('--token must not contain a comma');
  return {
    agents: positiveInt('agents', values.agents, 3, 1, 64),
    port: positiveInt('port', values.port, 50051, 1, 65535),
    token: values.token,
    nodeMemoryMib: positiveInt('node-memory-mib', values['node-memory-mib'], 8192),
    nodeVcpus: positiveInt('node-vcpus', values['node-vcpus'], 8, 1, 4096),
    reportIntervalMs:
      values['report-interval-ms'] === undefined ? undefined : positiveInt('report-interval-ms', values['report-interval-ms'], 1000, 10, 600_000),
    verbose: values.verbose ?? false,
    help: values.help ?? false,
  };
}
