import { parseArgs } from 'node:util';
import { HYPERVISORS, type Hypervisor } from './cluster-env.js';

/** What `npm run cluster -- …` accepts (docs/api.md, "A local cluster for clients and tests" and "version 2"). */
export interface ClusterArgs {
  agents: number;
  port: number;
  token: string | undefined;
  readToken: string | undefined;
  nodeMemoryMib: number;
  nodeVcpus: number;
  reportIntervalMs: number | undefined;
  supervise: boolean;
  httpPort: number | undefined;
  hypervisor: Hypervisor;
  certsDir: string | undefined;
  insecure: boolean;
  apiTls: boolean;
  verbose: boolean;
  help: boolean;
}

export const USAGE = `usage: npm run cluster -- [--agents N] [--port P] [--token T] [--read-token R] [--node-memory-mib M]
                           [--node-vcpus C] [--report-interval-ms I] [--supervise] [--http-port H]
                           [--hypervisor emulator|qemu] [--certs-dir DIR] [--insecure] [--api-tls] [--verbose]
  --agents N             node agents to start (default 3), named node-1 … node-N
  --port P               the controller's port on 127.0.0.1 (default 50051)
  --token T              require "authorization: Bearer T" on every ClusterService call (operator: every method)
  --read-token R         a reader token: Get*, List*, Watch* only
  --node-memory-mib M    memory each node registers (default 8192)
  --node-vcpus C         vCPUs each node registers (default 8)
  --report-interval-ms I agent report interval (default 1000)
  --supervise            restart any process that dies (Redis, the controller, an agent) within 2 s, with the
                         same ports, node ids and Redis data; without it, a dead process stays dead and the
                         rest of the cluster keeps running
  --http-port H          the controller's HTTP port (/metrics, /livez, /readyz, the web console)
  --hypervisor K         the agents' driver: emulator (default) or qemu
  --certs-dir DIR        where the CA and certificates are (default: a temporary directory, removed at exit)
  --insecure             plaintext agent plane (controller <-> agents, agent <-> agent)
  --api-tls              ClusterService over TLS
  --verbose              echo every process's log lines (default: warnings and errors only)
Redis: REDIS_URL if set (its keys under a unique prefix are removed on exit), else a private, durable
redis-server (append-only file, fsync on every write) in the cluster's temporary directory.
SIGINT or SIGTERM stops every process and removes the temporary directory.`;

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
  if (!/^\d+$/.test(value.trim()) || !Number.isInteger(n) || n < min || n > max) {
    throw new UsageError(`--${name} must be an integer in [${min}, ${max}], got ${JSON.stringify(value)}`);
  }
  return n;
}

/** A bearer token: non-empty, and no comma (API_TOKENS is a comma-separated list). */
function bearerToken(name: string, value: string | undefined): string | undefined {
  if (value === undefined) return undefined;
  if (value.trim() === '') throw new UsageError(`--${name} must not be empty`);
  if (value.includes(',')) throw new UsageError(`--${name} must not contain a comma`);
  return value;
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
        'read-token': { type: 'string' },
        'node-memory-mib': { type: 'string' },
        'node-vcpus': { type: 'string' },
        'report-interval-ms': { type: 'string' },
        supervise: { type: 'boolean' },
        'http-port': { type: 'string' },
        hypervisor: { type: 'string' },
        'certs-dir': { type: 'string' },
        insecure: { type: 'boolean' },
        'api-tls': { type: 'boolean' },
        verbose: { type: 'boolean', short: 'v' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const token = bearerToken('token', values.token);
  const readToken = bearerToken('read-token', values['read-token']);
  if (readToken !== undefined && readToken === token) throw new UsageError('--read-token must differ from --token');
  const hypervisor = values.hypervisor ?? 'emulator';
  if (!(HYPERVISORS as readonly string[]).includes(hypervisor)) {
    throw new UsageError(`--hypervisor must be ${HYPERVISORS.join(' or ')}, got ${JSON.stringify(hypervisor)}`);
  }
  const port = positiveInt('port', values.port, 50051, 1, 65535);
  const httpPort = values['http-port'] === undefined ? undefined : positiveInt('http-port', values['http-port'], 0, 1, 65535);
  if (httpPort === port) throw new UsageError('--http-port must differ from --port');
  if (values['certs-dir'] !== undefined && values['certs-dir'].trim() === '') throw new UsageError('--certs-dir must not be empty');
  return {
    agents: positiveInt('agents', values.agents, 3, 1, 64),
    port,
    token,
    readToken,
    nodeMemoryMib: positiveInt('node-memory-mib', values['node-memory-mib'], 8192),
    nodeVcpus: positiveInt('node-vcpus', values['node-vcpus'], 8, 1, 4096),
    reportIntervalMs:
      values['report-interval-ms'] === undefined ? undefined : positiveInt('report-interval-ms', values['report-interval-ms'], 1000, 10, 600_000),
    supervise: values.supervise ?? false,
    httpPort,
    hypervisor: hypervisor as Hypervisor,
    certsDir: values['certs-dir'],
    insecure: values.insecure ?? false,
    apiTls: values['api-tls'] ?? false,
    verbose: values.verbose ?? false,
    help: values.help ?? false,
  };
}
