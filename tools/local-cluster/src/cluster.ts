import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cluster } from '@vmm/proto';
import { EntryPointMissingError, PortInUseError, ProcessExitedError, ReadyTimeoutError } from './errors.js';
import { clusterApi, type ClusterApi } from './grpc-client.js';
import { waitForServing } from './health.js';
import { delay, freePort, isPortFree } from './ports.js';
import { spawnProcess, type ManagedProcess, type SpawnProcessOptions } from './processes.js';
import { startRedis, type RedisHandle } from './redis.js';
import { deleteKeysWithPrefix } from './resp-client.js';

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
  /** Capacity each agent registers. Defaults 8192 MiB and 8 vCPUs. */
  nodeMemoryMib?: number;
  nodeVcpus?: number;
  /** Use this Redis; else REDIS_URL; else a private redis-server stopped by stop(). */
  redisUrl?: string;
  /** REDIS_PREFIX of the controller; default a unique `local-cluster-<uuid>`. */
  prefix?: string;
  /** Delete `${prefix}:*` on stop(). Default: true when Redis is external and the prefix was generated here. */
  removeKeysOnStop?: boolean;
  /** REPORT_INTERVAL_MS for the controller and the agents. */
  reportIntervalMs?: number;
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
  /** The current process (a new one after startAgent). */
  readonly process: ManagedProcess;
  readonly pid: number;
}

export interface LocalCluster {
  readonly controllerAddress: string;
  readonly controllerPort: number;
  readonly redisUrl: string;
  readonly prefix: string;
  readonly token: string | undefined;
  readonly reportIntervalMs: number;
  readonly agents: readonly AgentHandle[];
  readonly controller: ManagedProcess;
  /** A new promise-style ClusterService client (with the token if any); close it when done. */
  api(token?: string | null): ClusterApi;
  listNodes(): Promise<cluster.Node[]>;
  /** Resolves once every agent's node is READY (or `states` given) in ListNodes. */
  waitForNodes(states?: readonly cluster.NodeState[], timeoutMs?: number): Promise<cluster.Node[]>;
  /** Sends `signal` to agent i; for SIGTERM/SIGKILL/SIGINT it awaits the exit. */
  killAgent(index: number, signal?: NodeJS.Signals): Promise<void>;
  /** Starts agent i again (same node id, port and address) once it has exited, and waits for its health. */
  startAgent(index: number): Promise<void>;
  /** Stops the controller (SIGTERM by default) and awaits its exit. */
  stopController(signal?: NodeJS.Signals): Promise<void>;
  /** Starts the controller again on the same port and prefix and waits for its health. */
  startController(): Promise<void>;
  /** stopController + startController. */
  restartController(signal?: NodeJS.Signals): Promise<void>;
  /** Stops every process (agents, controller, then a private Redis) and removes its keys if asked. */
  stop(): Promise<void>;
}

const TERMINATING: ReadonlySet<NodeJS.Signals> = new Set(['SIGTERM', 'SIGKILL', 'SIGINT', 'SIGQUIT', 'SIGHUP']);

/** Starts Redis (unless given), a controller and N agents as processes; resolves once every node is READY. */
export async function startCluster(options: ClusterOptions = {}): Promise<LocalCluster> {
  const agentCount = options.agents ?? 3;
  const controllerMain = options.controllerMain ?? CONTROLLER_MAIN;
  const agentMain = options.agentMain ?? AGENT_MAIN;
  for (const entry of [controllerMain, agentMain]) if (!existsSync(entry)) throw new EntryPointMissingError(entry);
  // A foreign server on the port would answer our health checks: refuse before starting anything.
  if (options.port && !(await isPortFree(options.port))) throw new PortInUseError(options.port);
  const readyTimeoutMs = options.readyTimeoutMs ?? 60_000;
  const reportIntervalMs = options.reportIntervalMs ?? 1000;
  const logLevel = options.logLevel ?? process.env.LOG_LEVEL ?? 'warn';

  const redis: RedisHandle = await startRedis({ url: options.redisUrl, onLine: options.onLine });
  const prefix = options.prefix ?? `local-cluster-${randomUUID()}`;
  const removeKeysOnStop = options.removeKeysOnStop ?? (redis.kind === 'external' && options.prefix === undefined);
  const controllerPort = options.port || (await freePort());
  const controllerAddress = `127.0.0.1:${controllerPort}`;
  const common: Record<string, string> = {
    REPORT_INTERVAL_MS: String(reportIntervalMs),
    LOG_LEVEL: logLevel,
    ...options.extraEnv,
  };

  const controllerEnv: Record<string, string> = {
    ...common,
    CONTROLLER_HOST: '127.0.0.1',
    CONTROLLER_PORT: String(controllerPort),
    REDIS_URL: redis.url,
    REDIS_PREFIX: prefix,
    API_TOKENS: options.token ?? '',
    ...options.controllerEnv,
  };
  let controller: ManagedProcess | undefined;
  const agents: AgentHandle[] = [];
  const agentEnvs: Record<string, string>[] = [];
  let stopped = false;

  const spawnController = () =>
    spawnProcess({ name: 'controller', args: [controllerMain], env: controllerEnv, cwd: REPO_ROOT, onLine: options.onLine });
  const spawnAgent = (index: number) =>
    spawnProcess({ name: agents[index]!.nodeId, args: [agentMain], env: agentEnvs[index]!, cwd: REPO_ROOT, onLine: options.onLine });

  // While waiting for readiness, a child that died is the real error, not the timeout.
  const deadChild = (): Error | undefined => {
    for (const p of [controller, ...agents.map((a) => a.process)]) {
      if (p && !p.running) {
        const c = p.child;
        return new ProcessExitedError(p.name, c.exitCode, c.signalCode, p.output());
      }
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

  const waitForNodes = async (
    states: readonly cluster.NodeState[] = [cluster.NodeState.NODE_STATE_READY],
    timeoutMs = readyTimeoutMs,
  ) => {
    const deadline = Date.now() + timeoutMs;
    let last = 'no answer yet';
    for (;;) {
      const dead = deadChild();
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

  const stopController = async (signal: NodeJS.Signals = 'SIGTERM') => {
    if (!controller) return;
    if (signal === 'SIGTERM') await controller.stop();
    else {
      controller.signal(signal);
      await controller.exited;
    }
  };
  const startController = async () => {
    if (controller?.running) throw new Error('the controller is still running');
    controller = spawnController();
    await waitForServing(controllerAddress, { timeoutMs: readyTimeoutMs, abort: deadChild });
  };

  const stop = async () => {
    if (stopped) return;
    stopped = true;
    // Agents first, so they do not log reconnect errors against a stopped controller.
    await Promise.all(agents.map((a) => a.process.stop()));
    await controller?.stop();
    try {
      if (removeKeysOnStop) await deleteKeysWithPrefix(redis.url, prefix);
    } finally {
      await redis.stop();
    }
  };

  try {
    await startController();
    for (let i = 0; i < agentCount; i++) {
      const nodeId = `node-${i + 1}`;
      const port = await freePort();
      const address = `127.0.0.1:${port}`;
      agentEnvs.push({
        ...common,
        NODE_ID: nodeId,
        AGENT_HOST: '127.0.0.1',
        AGENT_PORT: String(port),
        AGENT_ADVERTISE_ADDRESS: address,
        CONTROLLER_ADDRESS: controllerAddress,
        NODE_VCPUS: String(options.nodeVcpus ?? 8),
        NODE_MEMORY_MIB: String(options.nodeMemoryMib ?? 8192),
        ...options.agentEnv?.(i),
      });
      const handle = { index: i, nodeId, port, address, process: undefined as unknown as ManagedProcess };
      Object.defineProperty(handle, 'pid', { get: () => handle.process.pid, enumerable: true });
      agents.push(handle as AgentHandle);
      handle.process = spawnAgent(i);
    }
    await Promise.all(agents.map((a) => waitForServing(a.address, { timeoutMs: readyTimeoutMs, abort: deadChild })));
    await waitForNodes();
  } catch (err) {
    await stop().catch(() => {});
    throw err;
  }

  return {
    controllerAddress,
    controllerPort,
    redisUrl: redis.url,
    prefix,
    token: options.token,
    reportIntervalMs,
    agents,
    get controller() {
      return controller!;
    },
    api,
    listNodes,
    waitForNodes,
    async killAgent(index, signal = 'SIGTERM') {
      const agent = agents[index]!;
      if (signal === 'SIGTERM') await agent.process.stop();
      else {
        agent.process.signal(signal);
        if (TERMINATING.has(signal)) await agent.process.exited;
      }
    },
    async startAgent(index) {
      const agent = agents[index]! as { process: ManagedProcess; address: string };
      if (agent.process.running) throw new Error(`agent ${index} is still running`);
      agent.process = spawnAgent(index);
      await waitForServing(agent.address, { timeoutMs: readyTimeoutMs, abort: deadChild });
    },
    stopController,
    startController,
    async restartController(signal = 'SIGTERM') {
      await stopController(signal);
      await startController();
    },
    stop,
  };
}
