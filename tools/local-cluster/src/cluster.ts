import { existsSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { cluster } from '@vmm/proto';
import { ALLOCATORS, allocatorEnv } from './allocator.js';
import { makeClusterDirs, type ClusterDirs } from './cluster-dirs.js';
import { agentEnvironment, controllerEnvironment, HYPERVISORS, type SecuritySettings } from './cluster-env.js';
import {
  CLUSTER_SIGNALS,
  type AgentHandle,
  type ClusterOptions,
  type ClusterProcessInfo,
  type ClusterProcessKind,
  type LocalCluster,
} from './cluster-handle.js';
import {
  EntryPointMissingError,
  InvalidClusterOptionError,
  PortInUseError,
  ReadyTimeoutError,
  UnknownProcessError,
  UnsupportedSignalError,
} from './errors.js';
import { makeClusterCerts } from '@vmm/tls';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { clusterCredentials } from './cluster-credentials.js';
import { clusterApi } from './grpc-client.js';
import { waitForServing } from './health.js';
import { delay, freePort, isPortFree } from './ports.js';
import { exitedError, spawnProcess } from './processes.js';
import { deleteKeysWithPrefix } from './redis-client.js';
import { startRedis, type RedisHandle } from './redis.js';
import { SupervisedProcess } from './supervised-process.js';

/** The repository root: this file is tools/local-cluster/{src,dist}/cluster.{ts,js}. */
export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../../..');
export const CONTROLLER_MAIN = path.join(REPO_ROOT, 'apps/controller/dist/main.js');
export const AGENT_MAIN = path.join(REPO_ROOT, 'apps/node-agent/dist/main.js');

export * from './cluster-handle.js';

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
  for (const name of ['controllerAllocator', 'agentAllocator'] as const) {
    const allocator = options[name];
    if (allocator !== undefined && !ALLOCATORS.includes(allocator)) {
      throw new InvalidClusterOptionError(name, `expected ${ALLOCATORS.join(', ')}, got ${JSON.stringify(allocator)}`);
    }
    try {
      allocatorEnv(allocator ?? 'glibc'); // throws for jemalloc when it is not installed
    } catch (err) {
      throw new InvalidClusterOptionError(name, (err as Error).message);
    }
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
  for (const port of [options.port, options.httpPort, options.agentPlanePort]) if (port && !(await isPortFree(port))) throw new PortInUseError(port);
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
  const nodeIds = Array.from({ length: agentCount }, (_, i) => `node-${i + 1}`);
  if (!security.insecure || security.apiTls) {
    try {
      // An existing CA in a named --certs-dir is reused: certificates made before stay valid.
      await makeClusterCerts({ out: dirs.certsDir, nodes: nodeIds });
    } catch (err) {
      await redis.stop().catch(() => {});
      await dirs.remove();
      throw err;
    }
  }
  const creds = clusterCredentials(security);
  const common: Record<string, string> = { REPORT_INTERVAL_MS: String(reportIntervalMs), LOG_LEVEL: logLevel, ...options.extraEnv };

  const units = new Map<string, Unit>();
  if (redis.unit) units.set('redis', { kind: 'redis', address: new URL(redis.url).host, process: redis.unit });
  const agents: AgentHandle[] = [];
  let controllerPort = 0;
  let controllerAddress = '';
  let agentPlaneAddress = '';

  const serviceUnit = (name: string, kind: ClusterProcessKind, address: string, main: string, env: Record<string, string>, healthCredentials: ChannelCredentials) => {
    const unit: Unit = {
      kind,
      address,
      process: new SupervisedProcess({
        name,
        spawn: () => spawnProcess({ name, args: [...(options.execArgv ?? []), main], env, cwd: REPO_ROOT, onLine: options.onLine }),
        ready: (child) =>
          waitForServing(address, { timeoutMs: readyTimeoutMs, credentials: healthCredentials, abort: () => (child.running ? undefined : exitedError(child)) }),
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

  const api = (token?: string | null) => clusterApi(controllerAddress, token === null ? undefined : (token ?? options.token), creds.api());
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
    const agentPlanePort = security.insecure ? controllerPort : options.agentPlanePort || (await freePort());
    agentPlaneAddress = `127.0.0.1:${agentPlanePort}`;
    const preloaded = options.extraEnv?.LD_PRELOAD ?? process.env.LD_PRELOAD;
    const controllerEnv = controllerEnvironment({
      port: controllerPort,
      agentPlanePort,
      redisUrl: redis.url,
      prefix,
      token: options.token,
      readToken: options.readToken,
      httpPort: options.httpPort,
      security,
      common,
      overrides: { ...allocatorEnv(options.controllerAllocator ?? 'auto', { inherited: preloaded }), ...options.controllerEnv },
    });
    await serviceUnit('controller', 'controller', controllerAddress, controllerMain, controllerEnv, creds.api()).start();
    const agentAllocator = allocatorEnv(options.agentAllocator ?? 'glibc', { inherited: preloaded });
    for (let index = 0; index < agentCount; index++) {
      const nodeId = nodeIds[index]!;
      const port = await freePort();
      const stateDir = await dirs.agentStateDir(nodeId);
      const env = agentEnvironment({
        nodeId,
        port,
        controllerAddress: agentPlaneAddress,
        nodeVcpus: options.nodeVcpus ?? 8,
        nodeMemoryMib: options.nodeMemoryMib ?? 8192,
        hypervisor: options.hypervisor ?? 'emulator',
        stateDir,
        security,
        common,
        overrides: { ...agentAllocator, ...options.agentEnv?.(index) },
      });
      const unit = serviceUnit(nodeId, 'agent', `127.0.0.1:${port}`, agentMain, env, creds.as('operator'));
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
    agentPlaneAddress,
    insecure: security.insecure,
    apiTls: security.apiTls,
    credentials: creds,
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
