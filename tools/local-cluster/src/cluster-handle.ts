import type { cluster } from '@vmm/proto';
import type { Allocator } from './allocator.js';
import type { Hypervisor } from './cluster-env.js';
import type { ClusterCredentials } from './cluster-credentials.js';
import type { ClusterApi } from './grpc-client.js';
import type { ProcessState } from './process-state.js';
import type { ManagedProcess, SpawnProcessOptions } from './processes.js';
import type { RestartBackoff } from './restart-backoff.js';
import type { ProcessEvent, Restarted } from './supervised-process.js';

// What startCluster takes and the handle it returns (cluster.ts starts the processes).

export interface ClusterOptions {
  /** Number of node agents, named node-1 … node-N. Default 3. */
  agents?: number;
  /** The controller's port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
  /** Its agent-plane (mutual TLS) port; 0 (the default) picks a free one. Unused when insecure. */
  agentPlanePort?: number;
  /** When set, the controller requires `authorization: Bearer <token>` (API_TOKENS). */
  token?: string;
  /** A reader token (API_READ_TOKENS): Get*, List*, Watch* only. */
  readToken?: string;
  /** Capacity each agent registers. Defaults 8192 MiB and 8 vCPUs. */
  nodeMemoryMib?: number;
  nodeVcpus?: number;
  /** The agents' driver (HYPERVISOR). Default `emulator`. */
  hypervisor?: Hypervisor;
  /** The controller's HTTP port (HTTP_PORT); unset: the controller's default. */
  httpPort?: number;
  /** Use this Redis; else REDIS_URL; else a private, durable redis-server stopped by stop(). */
  redisUrl?: string;
  /** Start a private redis-server even when REDIS_URL is set (it is the only Redis `supervise` restarts). */
  privateRedis?: boolean;
  /** REDIS_PREFIX of the controller; default a unique `local-cluster-<uuid>`. */
  prefix?: string;
  /** Delete `${prefix}:*` on stop(). Default: true when Redis is external and the prefix was generated here. */
  removeKeysOnStop?: boolean;
  /** REPORT_INTERVAL_MS for the controller and the agents. */
  reportIntervalMs?: number;
  /**
   * Restart any process of the cluster (Redis, the controller, an agent) that dies, with the same
   * ports, node ids, environment and Redis data, as a service manager does. Without it, a process that
   * dies stays dead and the others go on.
   */
  supervise?: boolean;
  restartBackoff?: RestartBackoff;
  /** A process died (not supervised) or was restarted (supervised): one event each. */
  onProcessEvent?: (event: ProcessEvent) => void;
  /** Where the CA and certificates are (kept); default `<cluster temp dir>/certs` (removed by stop()). */
  certsDir?: string;
  /** Plaintext agent plane (AGENT_PLANE_INSECURE=1). */
  insecure?: boolean;
  /** ClusterService over TLS (API_TLS=1). */
  apiTls?: boolean;
  /** Added to the environment of every process (controller and agents). */
  extraEnv?: Record<string, string>;
  /** The controller's malloc (allocator.ts says why); default `auto`, jemalloc where it is installed. */
  controllerAllocator?: Allocator;
  /** The agents' malloc; default `glibc` (jemalloc cost the TLS data plane 7–18% of its throughput). */
  agentAllocator?: Allocator;
  /** Node options before the entry point of the controller and of every agent (e.g. V8 flags NODE_OPTIONS does not take). */
  execArgv?: readonly string[];
  /** Added to the controller's environment only. */
  controllerEnv?: Record<string, string>;
  /** Added to agent i's environment only (0-based). */
  agentEnv?: (index: number) => Record<string, string>;
  /** LOG_LEVEL of the children; default LOG_LEVEL from the environment, else `warn`. */
  logLevel?: string;
  /** Every output line of every child (for example to echo it, prefixed by its name). */
  onLine?: SpawnProcessOptions['onLine'];
  /** How long startCluster waits for health and for every node READY. Default 60 s. */
  readyTimeoutMs?: number;
  controllerMain?: string;
  agentMain?: string;
}

export interface AgentHandle {
  readonly index: number;
  readonly nodeId: string;
  readonly port: number;
  /** host:port, what the agent advertises (its Node.address). */
  readonly address: string;
  /** Its STATE_DIR, the same across its restarts. */
  readonly stateDir: string;
  /** The current process (a new one after a restart or startAgent). */
  readonly process: ManagedProcess;
  readonly pid: number;
}

export type ClusterProcessKind = 'redis' | 'controller' | 'agent';

/** One process of the cluster, now. */
export interface ClusterProcessInfo {
  /** `redis` (a private one only), `controller`, `node-1` … */
  name: string;
  kind: ClusterProcessKind;
  /** host:port it serves. */
  address: string;
  /** The current pid while it runs. */
  pid: number | undefined;
  state: ProcessState;
  /** Automatic restarts (supervise) so far. */
  restarts: number;
}

/** The signals the cluster sends to its own processes on request (chaos tests): only to our children, by pid. */
export const CLUSTER_SIGNALS = ['SIGKILL', 'SIGSTOP', 'SIGCONT', 'SIGTERM'] as const;
export type ClusterSignal = (typeof CLUSTER_SIGNALS)[number];

export interface LocalCluster {
  readonly controllerAddress: string;
  readonly controllerPort: number;
  /** Where agents register (the controller's mutual-TLS port; the controller's address when insecure). */
  readonly agentPlaneAddress: string;
  readonly insecure: boolean;
  readonly apiTls: boolean;
  /** gRPC credentials made from the cluster's certificates (plaintext ones when insecure). */
  readonly credentials: ClusterCredentials;
  readonly redisUrl: string;
  readonly prefix: string;
  readonly token: string | undefined;
  readonly reportIntervalMs: number;
  readonly supervise: boolean;
  /** The cluster's temporary directory (removed by stop()). */
  readonly tempDir: string;
  readonly certsDir: string;
  /** The private redis-server's data directory; undefined with an external Redis. */
  readonly redisDataDir: string | undefined;
  readonly agents: readonly AgentHandle[];
  /** The controller's current process. */
  readonly controller: ManagedProcess;
  /** A new promise-style ClusterService client (with the token if any); close it when done. */
  api(token?: string | null): ClusterApi;
  listNodes(): Promise<cluster.Node[]>;
  /** Resolves once every agent's node is READY (or `states` given) in ListNodes. */
  waitForNodes(states?: readonly cluster.NodeState[], timeoutMs?: number): Promise<cluster.Node[]>;
  /** Every process of the cluster: Redis (when private), the controller, the agents. */
  processes(): ClusterProcessInfo[];
  processInfo(name: string): ClusterProcessInfo;
  /** The current pid of a process while it runs. */
  pidOf(name: string): number | undefined;
  restartsOf(name: string): number;
  /** Sends SIGKILL, SIGSTOP, SIGCONT or SIGTERM to that process's current pid; returns the pid. */
  signal(name: string, signal: ClusterSignal): number;
  /**
   * Resolves once the process was restarted (supervise) after its `after`-th restart (default: the
   * count now) and serves again; READY_TIMEOUT after `timeoutMs` (default 30 s).
   */
  waitForRestart(name: string, options?: { after?: number; timeoutMs?: number }): Promise<Restarted>;
  /** Sends `signal` to agent i (no-op when it is not running); for SIGTERM it stops it on purpose (no restart). */
  killAgent(index: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts agent i again (same node id, port, address, STATE_DIR) once it has exited, and waits for its health. */
  startAgent(index: number): Promise<void>;
  /** Stops the controller (SIGTERM: on purpose, not restarted) and awaits its exit. */
  stopController(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the controller again on the same port and prefix and waits for its health. */
  startController(): Promise<void>;
  /** stopController + startController. */
  restartController(signal?: NodeJS.Signals): Promise<void>;
  /** Stops every process (agents, controller, then Redis), removes its keys if asked, and its temp dirs. */
  stop(): Promise<void>;
}
