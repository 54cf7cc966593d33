/**
 * The controller's configuration: every environment variable it reads, with its default and meaning.
 * `controllerEnv` is the single source that docker-compose.yml, the README and docs/internals.md are
 * checked against; `loadControllerConfig` parses and validates it.
 */
import { LOG_FORMATS, parseLogFormat, type LogFormat } from '@vmm/logging';
import { InvalidPolicyError } from '@vmm/migration/errors';
import { DEFAULT_POLICY, validatePolicyDefaults, type PolicyDefaults } from '@vmm/migration/policy';
import { AGENT_PLANE_ENV, loadAgentPlane, readTlsMaterial, TlsFileError, type AgentPlane, type TlsMaterial } from '@vmm/tls';
import { readFileSync } from 'node:fs';

export interface EnvVarSpec {
  readonly default: string;
  readonly doc: string;
}

export const controllerEnv = {
  CONTROLLER_HOST: { default: '127.0.0.1', doc: 'address the gRPC server binds' },
  CONTROLLER_PORT: { default: '50051', doc: 'its port' },
  REDIS_URL: { default: 'redis://127.0.0.1:6379', doc: 'Redis holding all state' },
  REDIS_PREFIX: { default: 'vmm', doc: 'prefix of every key and BullMQ queue (tests use a unique one each)' },
  API_TOKENS: { default: '', doc: 'comma-separated operator bearer tokens (every ClusterService call); with none (here or below) auth is off' },
  API_READ_TOKENS: { default: '', doc: 'comma-separated reader tokens: Get*, List*, Watch* only (anything else PERMISSION_DENIED)' },
  API_TOKENS_FILE: { default: '', doc: 'a file of `operator <token>` / `reader <token>` lines (# comments), so that tokens stay out of `ps` and the environment' },
  API_TLS: { default: '0', doc: "1: ClusterService over TLS with the controller's certificate (TLS_CERT_FILE); clients verify it with ca.pem" },
  AGENT_PLANE_PORT: { default: '50050', doc: 'port of the agent plane (RegistryService, mutual TLS) on CONTROLLER_HOST; agents dial it as CONTROLLER_ADDRESS. With AGENT_PLANE_INSECURE=1 the registry is served on CONTROLLER_PORT instead' },
  ...AGENT_PLANE_ENV,
  REPORT_INTERVAL_MS: {
    default: '1000',
    doc: 'report interval told to agents; a node is NOT_READY after 3 missed intervals',
  },
  NODE_LEASE_MS: {
    default: '5000',
    doc: "each report ack renews the node's lease for this long; an agent whose lease runs out pauses its restartable VMs, which the controller boots elsewhere only after twice this (at least 3 report intervals)",
  },
  MAX_MIGRATIONS_CLUSTER: { default: '5', doc: 'migrations in flight in the cluster' },
  MAX_MIGRATIONS_OUTBOUND_PER_NODE: { default: '2', doc: 'per source node' },
  MAX_MIGRATIONS_INBOUND_PER_NODE: { default: '2', doc: 'per target node' },
  MEMORY_HIGH_WATERMARK_PERCENT: {
    default: '90',
    doc: "a ready node whose real memory use (after KSM) exceeds this % of its physical memory has VMs migrated off it; a target must stay at or below it",
  },
  MEMORY_LOW_WATERMARK_PERCENT: {
    default: '80',
    doc: 'it stops once its use, less the VMs already leaving, is at or below this % (below the high watermark)',
  },
  MIGRATION_DEFAULT_DOWNTIME_LIMIT_MS: {
    default: String(DEFAULT_POLICY.downtimeLimitMs),
    doc: 'downtime_limit_ms of a MigrateVm that does not set it (1..60000)',
  },
  MIGRATION_DEFAULT_MAX_BANDWIDTH_MIB_PER_SEC: {
    default: String(DEFAULT_POLICY.maxBandwidthMibPerSec),
    doc: 'max_bandwidth_mib_per_sec when unset: 0 = unlimited, else 1..1048576',
  },
  MIGRATION_DEFAULT_MAX_ROUNDS: { default: String(DEFAULT_POLICY.maxRounds), doc: 'max_rounds when unset (1..10000)' },
  MIGRATION_DEFAULT_AUTO_CONVERGE: { default: String(DEFAULT_POLICY.autoConverge), doc: 'auto_converge when unset (true or false; DrainNode always sets it)' },
  MIGRATION_DEFAULT_XBZRLE: { default: String(DEFAULT_POLICY.xbzrle), doc: 'xbzrle when unset (true or false)' },
  MIGRATION_DEFAULT_XBZRLE_CACHE_MIB: {
    default: String(DEFAULT_POLICY.xbzrleCacheMib),
    doc: "xbzrle_cache_mib when unset (≥ 1), capped at a quarter of the VM's memory",
  },
  MIGRATION_DEFAULT_MULTIFD_CHANNELS: {
    default: String(DEFAULT_POLICY.multifdChannels),
    doc: "multifd_channels when unset (1..16; QEMU nodes' parallel stream connections, the emulator uses one)",
  },
  MIGRATION_DEFAULT_COMPLETION_TIMEOUT_PER_GIB_MS: {
    default: String(DEFAULT_POLICY.completionTimeoutPerGibMs),
    doc: "completion_timeout_ms when unset, per GiB of the VM's memory (1000..86400000; at least 60 s, at most 24 h per VM)",
  },
  MIGRATION_RETENTION: {
    default: '7d',
    doc: 'how long a finished migration (COMPLETED, FAILED, CANCELLED) is kept before a sweep removes it (GetMigration: NOT_FOUND): a duration such as `7d`, `12h`, `30m` or `90s` (1s..3650d)',
  },
  LOG_LEVEL: { default: 'info', doc: 'pino level' },
  LOG_FORMAT: { default: 'json', doc: '`json` (one JSON line per entry) or `pretty` (pino-pretty, for people)' },
  WATCH_HISTORY: { default: '10000', doc: 'changes kept for WatchEvents (the newest; a watch from an older revision gets OUT_OF_RANGE)' },
  HTTP_PORT: { default: '0', doc: 'port of the web console (/), /metrics, /livez and /readyz on CONTROLLER_HOST; 0 = no HTTP server' },
} as const satisfies Record<string, EnvVarSpec>;

export type ControllerEnvName = keyof typeof controllerEnv;

export interface ControllerConfig {
  host: string;
  port: number;
  redisUrl: string;
  redisPrefix: string;
  /** Both empty: authentication disabled. */
  apiTokens: ApiTokens;
  /** TLS of ClusterService (API_TLS=1), with the controller's certificate. */
  apiTls: TlsMaterial | undefined;
  /** Mutual TLS with the controller's certificate, or plaintext when AGENT_PLANE_INSECURE=1. */
  agentPlane: AgentPlane;
  /** Where RegistryService is served over mutual TLS (unused when the plane is insecure). */
  agentPlanePort: number;
  reportIntervalMs: number;
  /** A node is NOT_READY when its last report is older than this (3 report intervals). */
  nodeStaleAfterMs: number;
  /** The lease a report ack grants (T): agents pause restartable VMs after T without an ack; restarts elsewhere wait 2T. */
  nodeLeaseMs: number;
  /** A VM placed on a node whose reports leave it out for this long is lost (FAILED, or restarted). */
  missingVmGraceMs: number;
  /**
   * When this controller process started: a node that was ready before is not judged NOT_READY until
   * its agent had the time to report to this process (the reports of a stopped controller are lost).
   */
  startedAtMs: number;
  maxMigrationsCluster: number;
  maxMigrationsOutboundPerNode: number;
  maxMigrationsInboundPerNode: number;
  /** Memory-pressure hysteresis, in % of a node's physical memory: start above high, stop at or below low. */
  memoryHighWatermarkPercent: number;
  memoryLowWatermarkPercent: number;
  /** Fields a MigrateVm leaves unset take these (MIGRATION_DEFAULT_*), checked by the migration policy's own rules. */
  migrationPolicyDefaults: Readonly<PolicyDefaults>;
  /** MIGRATION_RETENTION: a migration that ended longer ago than this is removed (ms). */
  migrationRetentionMs: number;
  logLevel: string;
  /** LOG_FORMAT: JSON lines, or pino-pretty's for people. */
  logFormat: LogFormat;
  /** /metrics, /livez, /readyz; 0: not served. */
  httpPort: number;
  /** WATCH_HISTORY: how many of the newest changes the history keeps for WatchEvents. */
  watchHistory: number;
}

export interface ApiTokens {
  operator: readonly string[];
  reader: readonly string[];
}

/** Thrown for an environment variable whose value cannot be used; main() prints it and exits 1. */
export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(
    readonly variable: ControllerEnvName,
    readonly value: string,
    reason: string,
  ) {
    super(`invalid ${variable}=${JSON.stringify(value)}: ${reason}`);
    this.name = 'ConfigError';
  }
}

const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];
export const NOT_READY_AFTER_INTERVALS = 3;

export function loadControllerConfig(env: NodeJS.ProcessEnv = process.env): ControllerConfig {
  const raw = (name: ControllerEnvName): string => {
    const value = env[name];
    return value === undefined || value === '' ? controllerEnv[name].default : value.trim();
  };
  const int = (name: ControllerEnvName, min: number, max: number): number => {
    const value = raw(name);
    if (!/^\d+$/.test(value)) throw new ConfigError(name, value, 'expected a whole number');
    const n = Number(value);
    if (n < min || n > max) throw new ConfigError(name, value, `expected ${min}..${max}`);
    return n;
  };

  const host = raw('CONTROLLER_HOST');
  const redisUrl = raw('REDIS_URL');
  if (!/^rediss?:\/\//.test(redisUrl)) throw new ConfigError('REDIS_URL', redisUrl, 'expected redis://host:port[/db]');
  const redisPrefix = raw('REDIS_PREFIX');
  if (!/^[A-Za-z0-9_.\-{}]+$/.test(redisPrefix)) {
    throw new ConfigError('REDIS_PREFIX', redisPrefix, 'use letters, digits, _ . - { } only');
  }
  const apiTokens = loadApiTokens(raw);
  let agentPlane: AgentPlane;
  try {
    agentPlane = loadAgentPlane(env, { role: 'controller' });
  } catch (error) {
    if (!(error instanceof TlsFileError)) throw error;
    throw new ConfigError('TLS_CERT_FILE', raw('TLS_CERT_FILE'), error.message);
  }
  const apiTlsFlag = raw('API_TLS');
  if (apiTlsFlag !== '0' && apiTlsFlag !== '1') throw new ConfigError('API_TLS', apiTlsFlag, 'expected 0 or 1');
  let apiTls: TlsMaterial | undefined;
  if (apiTlsFlag === '1') {
    if (!raw('TLS_CERT_FILE') || !raw('TLS_KEY_FILE') || !raw('TLS_CA_FILE')) {
      throw new ConfigError('API_TLS', apiTlsFlag, "needs TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE (the controller's certificate)");
    }
    try {
      apiTls = agentPlane.insecure ? readTlsMaterial({ ca: raw('TLS_CA_FILE'), cert: raw('TLS_CERT_FILE'), key: raw('TLS_KEY_FILE') }) : agentPlane.material;
    } catch (error) {
      if (!(error instanceof TlsFileError)) throw error;
      throw new ConfigError('API_TLS', apiTlsFlag, error.message);
    }
  }
  const logLevel = raw('LOG_LEVEL');
  if (!LOG_LEVELS.includes(logLevel)) throw new ConfigError('LOG_LEVEL', logLevel, `expected one of ${LOG_LEVELS.join(', ')}`);
  const logFormat = parseLogFormat(raw('LOG_FORMAT'));
  if (!logFormat) throw new ConfigError('LOG_FORMAT', raw('LOG_FORMAT'), `expected one of ${LOG_FORMATS.join(', ')}`);
  const reportIntervalMs = int('REPORT_INTERVAL_MS', 10, 3_600_000);
  const memoryHighWatermarkPercent = int('MEMORY_HIGH_WATERMARK_PERCENT', 1, 100);
  const memoryLowWatermarkPercent = int('MEMORY_LOW_WATERMARK_PERCENT', 1, 100);
  if (memoryLowWatermarkPercent >= memoryHighWatermarkPercent) {
    throw new ConfigError(
      'MEMORY_LOW_WATERMARK_PERCENT',
      raw('MEMORY_LOW_WATERMARK_PERCENT'),
      `must be below MEMORY_HIGH_WATERMARK_PERCENT (${memoryHighWatermarkPercent})`,
    );
  }

  return {
    host,
    port: int('CONTROLLER_PORT', 0, 65535),
    redisUrl,
    redisPrefix,
    apiTokens,
    apiTls,
    agentPlane,
    agentPlanePort: int('AGENT_PLANE_PORT', 0, 65535),
    reportIntervalMs,
    nodeStaleAfterMs: reportIntervalMs * NOT_READY_AFTER_INTERVALS,
    nodeLeaseMs: Math.max(int('NODE_LEASE_MS', 100, 3_600_000), reportIntervalMs * NOT_READY_AFTER_INTERVALS),
    missingVmGraceMs: reportIntervalMs * NOT_READY_AFTER_INTERVALS,
    startedAtMs: Date.now(),
    maxMigrationsCluster: int('MAX_MIGRATIONS_CLUSTER', 1, 10_000),
    maxMigrationsOutboundPerNode: int('MAX_MIGRATIONS_OUTBOUND_PER_NODE', 1, 10_000),
    maxMigrationsInboundPerNode: int('MAX_MIGRATIONS_INBOUND_PER_NODE', 1, 10_000),
    memoryHighWatermarkPercent,
    memoryLowWatermarkPercent,
    migrationPolicyDefaults: loadPolicyDefaults(raw),
    migrationRetentionMs: loadDuration('MIGRATION_RETENTION', raw('MIGRATION_RETENTION'), 1_000, 3650 * DAY_MS),
    logLevel,
    logFormat,
    httpPort: int('HTTP_PORT', 0, 65535),
    watchHistory: int('WATCH_HISTORY', 1, 10_000_000),
  };
}

const DAY_MS = 86_400_000;
const DURATION_UNIT_MS = { d: DAY_MS, h: 3_600_000, m: 60_000, s: 1_000 } as const;

/** A duration with its unit (`7d`, `12h`, `30m`, `90s`) in ms; undefined for anything else. */
export function parseDurationMs(value: string): number | undefined {
  const match = /^(\d+)\s*([dhms])$/.exec(value);
  if (!match) return undefined;
  return Number(match[1]) * DURATION_UNIT_MS[match[2] as keyof typeof DURATION_UNIT_MS];
}

function loadDuration(name: ControllerEnvName, value: string, minMs: number, maxMs: number): number {
  const ms = parseDurationMs(value);
  if (ms === undefined) throw new ConfigError(name, value, 'expected a whole number with a unit: 7d, 12h, 30m or 90s');
  if (ms < minMs || ms > maxMs) throw new ConfigError(name, value, `expected ${minMs / 1000}s..${maxMs / DAY_MS}d`);
  return ms;
}

function tokenList(value: string): string[] {
  return value
    .split(',')
    .map((t) => t.trim())
    .filter((t) => t.length > 0);
}

/** API_TOKENS, API_READ_TOKENS and the lines of API_TOKENS_FILE; one token in both scopes is refused. */
function loadApiTokens(raw: (name: ControllerEnvName) => string): ApiTokens {
  const operator = tokenList(raw('API_TOKENS'));
  const reader = tokenList(raw('API_READ_TOKENS'));
  const file = raw('API_TOKENS_FILE');
  if (file) {
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (error) {
      throw new ConfigError('API_TOKENS_FILE', file, `cannot read it (${(error as NodeJS.ErrnoException).code ?? String(error)})`);
    }
    text.split('\n').forEach((line, i) => {
      const trimmed = line.trim();
      if (trimmed === '' || trimmed.startsWith('#')) return;
      const match = /^(operator|reader)\s+(\S+)$/.exec(trimmed);
      if (!match) throw new ConfigError('API_TOKENS_FILE', file, `line ${i + 1}: expected "operator <token>" or "reader <token>"`);
      (match[1] === 'operator' ? operator : reader).push(match[2]!);
    });
  }
  const both = reader.find((t) => operator.includes(t));
  if (both !== undefined) throw new ConfigError('API_READ_TOKENS', raw('API_READ_TOKENS'), 'a token cannot be both an operator and a reader token');
  return { operator, reader };
}

/** The variable of each configurable policy default. */
const POLICY_DEFAULT_ENV = {
  downtimeLimitMs: 'MIGRATION_DEFAULT_DOWNTIME_LIMIT_MS',
  maxBandwidthMibPerSec: 'MIGRATION_DEFAULT_MAX_BANDWIDTH_MIB_PER_SEC',
  maxRounds: 'MIGRATION_DEFAULT_MAX_ROUNDS',
  autoConverge: 'MIGRATION_DEFAULT_AUTO_CONVERGE',
  xbzrle: 'MIGRATION_DEFAULT_XBZRLE',
  xbzrleCacheMib: 'MIGRATION_DEFAULT_XBZRLE_CACHE_MIB',
  multifdChannels: 'MIGRATION_DEFAULT_MULTIFD_CHANNELS',
  completionTimeoutPerGibMs: 'MIGRATION_DEFAULT_COMPLETION_TIMEOUT_PER_GIB_MS',
} as const satisfies Record<keyof PolicyDefaults, ControllerEnvName>;

/** Parses the MIGRATION_DEFAULT_* variables; the ranges are the policy's (validatePolicyDefaults). */
function loadPolicyDefaults(raw: (name: ControllerEnvName) => string): PolicyDefaults {
  const number = (field: keyof PolicyDefaults): number => {
    const name = POLICY_DEFAULT_ENV[field];
    const value = raw(name);
    if (!/^\d+(\.\d+)?$/.test(value)) throw new ConfigError(name, value, 'expected a number ≥ 0');
    return Number(value);
  };
  const flag = (field: 'autoConverge' | 'xbzrle'): boolean => {
    const name = POLICY_DEFAULT_ENV[field];
    const value = raw(name);
    if (value !== 'true' && value !== 'false') throw new ConfigError(name, value, 'expected true or false');
    return value === 'true';
  };
  const defaults: PolicyDefaults = {
    downtimeLimitMs: number('downtimeLimitMs'),
    maxBandwidthMibPerSec: number('maxBandwidthMibPerSec'),
    maxRounds: number('maxRounds'),
    autoConverge: flag('autoConverge'),
    xbzrle: flag('xbzrle'),
    xbzrleCacheMib: number('xbzrleCacheMib'),
    multifdChannels: number('multifdChannels'),
    completionTimeoutPerGibMs: number('completionTimeoutPerGibMs'),
  };
  try {
    return validatePolicyDefaults(defaults);
  } catch (error) {
    if (!(error instanceof InvalidPolicyError)) throw error;
    const name = POLICY_DEFAULT_ENV[error.field as keyof PolicyDefaults];
    throw new ConfigError(name, raw(name), error.reason);
  }
}

/** Injection token of the loaded ControllerConfig. */
export const CONFIG = Symbol('CONFIG');
