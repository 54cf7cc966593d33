import os from 'node:os';
import { KNOB_RANGES } from '@vmm/ksm';
import { AGENT_PLANE_ENV, loadAgentPlane, TlsFileError, type AgentPlane } from '@vmm/tls';
import { LOG_FORMATS, parseLogFormat, type LogFormat } from '@vmm/logging';
import { ConfigError } from './errors.js';
import { HYPERVISOR_KINDS, type HypervisorKind } from './hypervisor/hypervisor-kind.js';

/**
 * Every environment variable the agent reads: name → default (as documented) and meaning. The single
 * source for docs/internals.md, the README and docker-compose.yml (a test compares them).
 * Two defaults are derived rather than literal: NODE_ID (the hostname) and AGENT_ADVERTISE_ADDRESS.
 */
export const agentEnv = {
  NODE_ID: { default: 'hostname', doc: "the node's id" },
  AGENT_HOST: { default: '127.0.0.1', doc: "address the agent's gRPC server (and migration data listeners) bind" },
  AGENT_PORT: { default: '50052', doc: 'its gRPC port' },
  AGENT_ADVERTISE_ADDRESS: { default: 'AGENT_HOST:AGENT_PORT', doc: '`host:port` others use to reach it' },
  CONTROLLER_ADDRESS: { default: '127.0.0.1:50050', doc: "the controller's agent plane: its AGENT_PLANE_PORT (mutual TLS), or its CONTROLLER_PORT when the plane is insecure" },
  NODE_VCPUS: { default: '8', doc: 'capacity' },
  NODE_MEMORY_MIB: { default: '8192', doc: 'capacity (physical)' },
  CPU_ALLOCATION_RATIO: { default: '4.0', doc: 'vCPU overcommit' },
  RAM_ALLOCATION_RATIO: { default: '1.5', doc: 'memory overcommit' },
  REPORT_INTERVAL_MS: { default: '1000', doc: 'until the controller says otherwise at registration' },
  KSM_RUN: { default: '1', doc: 'ksmd knob: 0 stop, 1 run, 2 unmerge all' },
  KSM_PAGES_TO_SCAN: { default: '100', doc: 'ksmd knob: pages scanned per wake-up (1..100000)' },
  KSM_SLEEP_MILLISECS: { default: '20', doc: 'ksmd knob: sleep between scans (0..3600000 ms)' },
  KSM_MAX_PAGE_SHARING: { default: '256', doc: 'ksmd knob: most pages one KSM page may back (2..1000000)' },
  KSM_USE_ZERO_PAGES: { default: '0', doc: 'ksmd knob: 1 maps an all-zero page to the zero page instead of merging it' },
  STATE_DIR: { default: '', doc: 'directory where the agent keeps fences and migration state across its restarts (fsync\'d); empty: memory only' },
  SWITCHOVER_HOLD_MS: { default: '5000', doc: "how long a source that holds at the switch-over (QEMU's pause-before-switchover, its guest stopped) waits for the controller's ContinueSwitchover before it gives up and runs on (100..60000)" },
  HYPERVISOR: { default: 'emulator', doc: "the driver that runs this node's VMs: `emulator` (built in) or `qemu` (advertised as Node.hypervisor)" },
  ...AGENT_PLANE_ENV,
  LOG_LEVEL: { default: 'info', doc: 'pino level' },
  LOG_FORMAT: { default: 'json', doc: '`json` (one JSON line per entry) or `pretty` (pino-pretty, for people)' },
  AGENT_HTTP_PORT: { default: '0', doc: 'port of its Prometheus `/metrics` (and `/livez`) on AGENT_HOST, advertised as Node.metrics_url; 0 = no HTTP server' },
} as const satisfies Record<string, { default: string; doc: string }>;

export type AgentEnvName = keyof typeof agentEnv;

/** SWITCHOVER_HOLD_MS's upper bound: a guest stopped for longer is not a live migration. */
export const MAX_SWITCHOVER_HOLD_MS = 60_000;

export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface AgentConfig {
  nodeId: string;
  host: string;
  port: number;
  advertiseAddress: string;
  controllerAddress: string;
  vcpus: number;
  memoryMib: number;
  cpuAllocationRatio: number;
  ramAllocationRatio: number;
  reportIntervalMs: number;
  ksm: KsmSettings;
  /** '' = keep fences and migration state in memory only (tests). */
  stateDir: string;
  /** The driver of this node's VMs (HYPERVISOR), advertised at registration. */
  hypervisor: HypervisorKind;
  /** Mutual TLS with this node's certificate (it must name NODE_ID), or plaintext when AGENT_PLANE_INSECURE=1. */
  agentPlane: AgentPlane;
  logLevel: LogLevel;
  /** LOG_FORMAT: JSON lines, or pino-pretty's for people. */
  logFormat: LogFormat;
  /** SWITCHOVER_HOLD_MS: the longest a stopped source waits at the switch-over for the controller. */
  switchoverHoldMs: number;
  /** AGENT_HTTP_PORT: 0 = no metrics endpoint. */
  httpPort: number;
  /** Node.metrics_url: http://<advertised host>:<httpPort>/metrics, '' without an HTTP port. */
  metricsUrl: string;
}

/** ksmd's knobs at start (KSM_*); the last two may be left out by callers that build settings by hand. */
export interface KsmSettings {
  run: number;
  pagesToScan: number;
  sleepMillisecs: number;
  maxPageSharing?: number;
  useZeroPages?: boolean;
}

const HOST_PORT = /^(\[[0-9a-fA-F:.]+\]|[A-Za-z0-9._-]+):(\d{1,5})$/;
const NODE_ID = /^[A-Za-z0-9][A-Za-z0-9._-]{0,62}$/;

/**
 * Reads and validates the agent's configuration. Collects every problem before failing, so that an
 * operator fixes them in one go.
 * @throws ConfigError naming each bad variable, its value and what it should be.
 */
export function loadAgentConfig(env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const problems: string[] = [];
  const raw = (name: AgentEnvName): string => {
    const value = env[name]?.trim();
    return value === undefined || value === '' ? agentEnv[name].default : value;
  };
  const bad = (name: AgentEnvName, expected: string): void => {
    problems.push(`${name}=${JSON.stringify(env[name])}: expected ${expected}`);
  };
  const int = (name: AgentEnvName, min: number, max: number): number => {
    const text = raw(name);
    const value = Number(text);
    if (!/^-?\d+$/.test(text) || value < min || value > max) bad(name, `an integer in [${min}, ${max}]`);
    return value;
  };
  const positive = (name: AgentEnvName): number => {
    const value = Number(raw(name));
    if (!Number.isFinite(value) || value <= 0) bad(name, 'a positive number');
    return value;
  };
  const hostPort = (name: AgentEnvName, value: string): string => {
    const match = HOST_PORT.exec(value);
    const port = match ? Number(match[2]) : 0;
    if (!match || port < 1 || port > 65535) bad(name, 'host:port with a port in [1, 65535]');
    return value;
  };

  const nodeId = env.NODE_ID?.trim() || os.hostname();
  if (!NODE_ID.test(nodeId)) bad('NODE_ID', 'letters, digits, ".", "_" or "-", at most 63 characters');
  const host = raw('AGENT_HOST');
  const port = int('AGENT_PORT', 1, 65535);
  // Derived from AGENT_HOST:AGENT_PORT unless set; only a value given explicitly is checked here.
  const advertiseAddress = env.AGENT_ADVERTISE_ADDRESS?.trim()
    ? hostPort('AGENT_ADVERTISE_ADDRESS', env.AGENT_ADVERTISE_ADDRESS.trim())
    : `${host.includes(':') ? `[${host}]` : host}:${port}`;
  const logLevel = raw('LOG_LEVEL') as LogLevel;
  if (!LOG_LEVELS.includes(logLevel)) bad('LOG_LEVEL', `one of ${LOG_LEVELS.join(', ')}`);
  const logFormat = parseLogFormat(raw('LOG_FORMAT'));
  if (!logFormat) bad('LOG_FORMAT', `one of ${LOG_FORMATS.join(', ')}`);
  const hypervisor = raw('HYPERVISOR') as HypervisorKind;
  if (!HYPERVISOR_KINDS.includes(hypervisor)) bad('HYPERVISOR', `one of ${HYPERVISOR_KINDS.join(', ')}`);

  let agentPlane: AgentPlane = { insecure: true };
  try {
    agentPlane = loadAgentPlane(env, { role: 'node', nodeId });
  } catch (err) {
    if (!(err instanceof TlsFileError)) throw err;
    problems.push(err.message);
  }

  const httpPort = int('AGENT_HTTP_PORT', 0, 65535);
  const advertisedHost = advertiseAddress.slice(0, advertiseAddress.lastIndexOf(':'));
  const config: AgentConfig = {
    nodeId,
    host,
    port,
    advertiseAddress,
    controllerAddress: hostPort('CONTROLLER_ADDRESS', raw('CONTROLLER_ADDRESS')),
    vcpus: int('NODE_VCPUS', 1, 65536),
    memoryMib: int('NODE_MEMORY_MIB', 1, 16 * 1024 * 1024),
    cpuAllocationRatio: positive('CPU_ALLOCATION_RATIO'),
    ramAllocationRatio: positive('RAM_ALLOCATION_RATIO'),
    reportIntervalMs: int('REPORT_INTERVAL_MS', 10, 3_600_000),
    // The knobs' ranges are libs/ksm's (KNOB_RANGES), as for SetKsm.
    ksm: {
      run: int('KSM_RUN', KNOB_RANGES.run.min, KNOB_RANGES.run.max),
      pagesToScan: int('KSM_PAGES_TO_SCAN', KNOB_RANGES.pages_to_scan.min, KNOB_RANGES.pages_to_scan.max),
      sleepMillisecs: int('KSM_SLEEP_MILLISECS', KNOB_RANGES.sleep_millisecs.min, KNOB_RANGES.sleep_millisecs.max),
      maxPageSharing: int('KSM_MAX_PAGE_SHARING', KNOB_RANGES.max_page_sharing.min, KNOB_RANGES.max_page_sharing.max),
      useZeroPages: int('KSM_USE_ZERO_PAGES', KNOB_RANGES.use_zero_pages.min, KNOB_RANGES.use_zero_pages.max) === 1,
    },
    stateDir: raw('STATE_DIR'),
    switchoverHoldMs: int('SWITCHOVER_HOLD_MS', 100, MAX_SWITCHOVER_HOLD_MS),
    hypervisor,
    agentPlane,
    logLevel,
    logFormat: logFormat ?? 'json',
    httpPort,
    metricsUrl: httpPort > 0 ? `http://${advertisedHost}:${httpPort}/metrics` : '',
  };
  if (problems.length > 0) throw new ConfigError(problems);
  return config;
}
