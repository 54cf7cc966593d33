import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cluster } from '@vmm/proto';
import { makeClusterDirs, type ClusterDirs } from './cluster-dirs.js';
import { agentEnvironment, controllerEnvironment, HYPERVISORS, type Hypervisor, type SecuritySettings } from './cluster-env.js';
import {
  EntryPointMissingError,
  InvalidClusterOptionError,
  PortInUseError,
  ReadyTimeoutError,
  UnknownProcessError,
  UnsupportedSignalError,
} from './errors.js';
import { clusterApi, type ClusterApi } from './grpc-client.js';
import { waitForServing } from './health.js';
import { delay, freePort, isPortFree } from './ports.js';
import type { ProcessState } from './process-state.js';
import { exitedError, spawnProcess, type ManagedProcess, type SpawnProcessOptions } from './processes.js';
import { deleteKeysWithPrefix } from './redis-client.js';
import { startRedis, type RedisHandle } from './redis.js';
import type { RestartBackoff } from './restart-backoff.js';
import { SupervisedProcess, type ProcessEvent, type Restarted } from './supervised-process.js';

/** The repository root: this file is tools/local-cluster/{src,dist}/cluster.{ts,js}. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CONTROLLER_MAIN = path.join(REPO_ROOT, 'apps/controller/dist/main.js');
export const AGENT_MAIN = path.join(REPO_ROOT, 'apps/node-agent/dist/main.js');

export interface ClusterOptions {
  /** Number of node agents, named node-1 … node-N. Default 3. */
  agents?: number;
  /** The controller's port on 127.0.0.1; 0 (the default) picks a free one. */
  port?: number;
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

const TERMINATING: ReadonlySet<NodeJS.Signals> = new Set(['SIGTERM', 'SIGKILL', 'SIGINT', 'SIGQUIT', 'SIGHUP']);

interface Unit {
  kind: ClusterProcessKind;
  address: string;
  process: SupervisedProcess;
}

function validate(options: ClusterOptions): void {
  const agents = options.agents ?? 3;
  if (!Number.isInteger(agents) || agents < 1) throw new InvalidClusterOptionError('agents', `expected a whole number ≥ 1, got ${agents}`);
  if (options.hypervisor !== undefined && !HYPERVISORS.includes(options.hypervisor)) {
    throw new InvalidClusterOptionError('hypervisor', `expected ${HYPERVISORS.join(' or ')}, got ${JSON.stringify(options.hypervisor)}`);
  }
  for (const [name, port] of [['port', options.port], ['httpPort', options.httpPort]] as const) {
    if (port !== undefined && (!Number.isInteger(port) || port < 0 || port > 65535)) {
      throw new InvalidClusterOptionError(name, `expected a port 0..65535, got ${port}`);
    }
  }
  if (options.httpPort && options.httpPort === options.port) throw new InvalidClusterOptionError('httpPort', 'must differ from port');
  if (options.readToken !== undefined && (options.readToken === '' || options.readToken === options.token)) {
    throw new InvalidClusterOptionError('readToken', 'must be non-empty and differ from token');
  }
}

/** Starts Redis (unless given), a controller and N agents as processes; resolves once every node is READY. */
export async function startCluster(options: ClusterOptions = {}): Promise<LocalCluster> {
  validate(options);
  const agentCount = options.agents ?? 3;
  const controllerMain = options.controllerMain ?? CONTROLLER_MAIN;
  const agentMain = options.agentMain ?? AGENT_MAIN;
  for (const entry of [controllerMain, agentMain]) if (!existsSync(entry)) throw new EntryPointMissingError(entry);
  // A foreign server on a port would answer our health checks: refuse before starting anything.
  for (const port of [options.port, options.httpPort]) if (port && !(await isPortFree(port))) throw new PortInUseError(port);
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const reportIntervalMs = options.reportIntervalMs ?? 1000;
  const logLevel = options.logLevel ?? process.env.LOG_LEVEL ?? 'warn';
  const supervise = options.supervise ?? false;
  const supervision = { supervise, backoff: options.restartBackoff, onEvent: options.onProcessEvent };

  const dirs: ClusterDirs = await makeClusterDirs({ certsDir: options.certsDir });
  let redis: RedisHandle;
  try {
    redis = await startRedis({
      url: options.redisUrl,
      private: options.privateRedis,
      dataDir: dirs.redisDataDir,
      onLine: options.onLine,
      ...supervision,
    });
  } catch (err) {
    await dirs.remove();
    throw err;
  }
  const prefix = options.prefix ?? `local-cluster-${randomUUID()}`;
  const removeKeysOnStop = options.removeKeysOnStop ?? (redis.kind === 'external' && options.prefix === undefined);
  const security: SecuritySettings = { certsDir: dirs.certsDir, insecure: options.insecure ?? false, apiTls: options.apiTls ?? false };
  const common: Record<string, string> = { REPORT_INTERVAL_MS: String(reportIntervalMs), LOG_LEVEL: logLevel, ...options.extraEnv };

  const units = new Map<string, Unit>();
  if (redis.unit) units.set('redis', { kind: 'redis', address: new URL(redis.url).host, process: redis.unit });
  const agents: AgentHandle[] = [];
  let controllerPort = 0;
  let controllerAddress = '';

  const serviceUnit = (name: string, kind: ClusterProcessKind, address: string, main: string, env: Record<string, string>) => {
    const unit: Unit = {
      kind,
      address,
      process: new SupervisedProcess({
        name,
        spawn: () => spawnProcess({ name, args: [main], env, cwd: REPO_ROOT, onLine: options.onLine }),
        ready: (child) =>
          waitForServing(address, { timeoutMs: readyTimeoutMs, abort: () => (child.running ? undefined : exitedError(child)) }),
        ...supervision,
      }),
    };
    units.set(name, unit);
    return unit.process;
  };
  const unitOf = (name: string): Unit => {
    const unit = units.get(name);
    if (!unit) throw new UnknownProcessError(name, [...units.keys()]);
    return unit;
  };
  const controllerUnit = () => unitOf('controller').process;

  // While waiting for readiness, a process that died for good is the real error, not the timeout.
  const deadProcess = (): Error | undefined => {
    for (const { kind, process: p } of units.values()) {
      if (kind !== 'redis' && (p.state === 'dead' || p.state === 'stopped') && p.process) return exitedError(p.process);
    }
    return undefined;
  };

  const api = (token?: string | null) => clusterApi(controllerAddress, token === null ? undefined : (token ?? options.token));
  const listNodes = async () => {
    const client = api();
    try {
      return (await client.listNodes({}, { timeoutMs: 5000 })).nodes;
    } finally {
      client.close();
    }
  };
  const waitForNodes = async (states: readonly cluster.NodeState[] = [cluster.NodeState.NODE_STATE_READY], timeoutMs = readyTimeoutMs) => {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    for (;;) {
      const dead = deadProcess();
      if (dead) throw dead;
      try {
        const nodes = await listNodes();
        const ours = agents.map((a) => nodes.find((n) => n.nodeId === a.nodeId));
        if (ours.every((n) => n !== undefined && states.includes(n.state))) return nodes;
        last = ours.map((n, i) => `${agents[i]!.nodeId}=${n?.state ?? 'absent'}`).join(' ');
      } catch (err) {
        last = (err as Error).message;
      }
      if (Date.now() > deadline) throw new ReadyTimeoutError(`nodes ${states.join('/')}`, timeoutMs, last);
      await delay(100);
    }
  };

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      for (const unit of units.values()) unit.process.retire();
      try {
        // Agents first, so they do not log reconnect errors against a stopped controller.
        await Promise.all(agents.map((a) => unitOf(a.nodeId).process.stop()));
        await units.get('controller')?.process.stop();
        if (removeKeysOnStop) await deleteKeysWithPrefix(redis.url, prefix);
      } finally {
        try {
          await redis.stop();
        } finally {
          await dirs.remove();
        }
      }
    })());

  /** Sends `signal`; for a terminating one, awaits the exit. SIGTERM is a stop on purpose (no restart). */
  const kill = async (unit: SupervisedProcess, signal: NodeJS.Signals) => {
    if (signal === 'SIGTERM') return unit.stop();
    const child = unit.process;
    if (!unit.running || !child) return;
    unit.signal(signal);
    if (TERMINATING.has(signal)) await child.exited;
  };

  try {
    controllerPort = options.port || (await freePort());
    controllerAddress = `127.0.0.1:${controllerPort}`;
    const controllerEnv = controllerEnvironment({
      port: controllerPort,
      redisUrl: redis.url,
      prefix,
      token: options.token,
      readToken: options.readToken,
      httpPort: options.httpPort,
      security,
      common,
      overrides: options.controllerEnv,
    });
    await serviceUnit('controller', 'controller', controllerAddress, controllerMain, controllerEnv).start();
    for (let index = 0; index < agentCount; index++) {
      const nodeId = `node-${index + 1}`;
      const port = await freePort();
      const stateDir = await dirs.agentStateDir(nodeId);
      const env = agentEnvironment({
        nodeId,
        port,
        controllerAddress,
        nodeVcpus: options.nodeVcpus ?? 8,
        nodeMemoryMib: options.nodeMemoryMib ?? 8192,
        hypervisor: options.hypervisor ?? 'emulator',
        stateDir,
        security,
        common,
        overrides: options.agentEnv?.(index),
      });
      const unit = serviceUnit(nodeId, 'agent', `127.0.0.1:${port}`, agentMain, env);
      agents.push({
        index,
        nodeId,
        port,
        address: `127.0.0.1:${port}`,
        stateDir,
        get process() {
          return unit.process!;
        },
        get pid() {
          return unit.process!.pid;
        },
      });
    }
    await Promise.all(agents.map((a) => unitOf(a.nodeId).process.start()));
    await waitForNodes();
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }

  const info = (name: string): ClusterProcessInfo => {
    const unit = unitOf(name);
    const p = unit.process;
    return { name, kind: unit.kind, address: unit.address, pid: p.pid, state: p.state, restarts: p.restarts };
  };

  return {
    controllerAddress,
    controllerPort,
    redisUrl: redis.url,
    prefix,
    token: options.token,
    reportIntervalMs,
    supervise,
    tempDir: dirs.root,
    certsDir: dirs.certsDir,
    redisDataDir: redis.dataDir,
    agents,
    get controller() {
      return controllerUnit().process!;
    },
    api,
    listNodes,
    waitForNodes,
    processes: () => [...units.keys()].map(info),
    processInfo: info,
    pidOf: (name) => unitOf(name).process.pid,
    restartsOf: (name) => unitOf(name).process.restarts,
    signal(name, signal) {
      if (!CLUSTER_SIGNALS.includes(signal)) throw new UnsupportedSignalError(signal, CLUSTER_SIGNALS);
      return unitOf(name).process.signal(signal);
    },
    waitForRestart: (name, waitOptions) => unitOf(name).process.waitForRestart(waitOptions),
    killAgent: (index, signal = 'SIGTERM') => kill(unitOf(agents[index]!.nodeId).process, signal),
    startAgent: (index) => unitOf(agents[index]!.nodeId).process.start(),
    stopController: (signal = 'SIGTERM') => kill(controllerUnit(), signal),
    startController: () => controllerUnit().start(),
    async restartController(signal = 'SIGTERM') {
      await kill(controllerUnit(), signal);
      // SIGKILL under supervise restarts it by itself; stop that restart and start it here.
      await controllerUnit().stop();
      await controllerUnit().start();
    },
    stop,
  };
}
