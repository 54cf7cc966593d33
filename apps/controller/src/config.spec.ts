import { describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { DEFAULT_POLICY } from '@vmm/migration/policy';
import { makeClusterCerts } from '@vmm/tls';
import { ConfigError, controllerEnv, loadControllerConfig } from './config.js';

describe('loadControllerConfig', () => {
  it('uses the documented defaults', () => {
    const c = loadControllerConfig({ AGENT_PLANE_INSECURE: '1' });
    expect(c).toMatchObject({
      host: '127.0.0.1',
      port: 50051,
      redisUrl: 'redis://127.0.0.1:6379',
      redisPrefix: 'vmm',
      apiTokens: { operator: [], reader: [] },
      agentPlane: { insecure: true },
      agentPlanePort: 50050,
      apiTls: undefined,
      reportIntervalMs: 1000,
      nodeStaleAfterMs: 3000,
      maxMigrationsCluster: 5,
      maxMigrationsOutboundPerNode: 2,
      maxMigrationsInboundPerNode: 2,
      memoryHighWatermarkPercent: 90,
      memoryLowWatermarkPercent: 80,
      migrationPolicyDefaults: DEFAULT_POLICY,
      logLevel: 'info',
      logFormat: 'json',
      httpPort: 0,
      watchHistory: 10_000,
    });
  });

  it('reads the migration policy defaults', () => {
    const c = loadControllerConfig({ AGENT_PLANE_INSECURE: '1', 
      MIGRATION_DEFAULT_DOWNTIME_LIMIT_MS: '500',
      MIGRATION_DEFAULT_MAX_BANDWIDTH_MIB_PER_SEC: '128.5',
      MIGRATION_DEFAULT_MAX_ROUNDS: '10',
      MIGRATION_DEFAULT_AUTO_CONVERGE: 'true',
      MIGRATION_DEFAULT_XBZRLE: 'true',
      MIGRATION_DEFAULT_XBZRLE_CACHE_MIB: '128',
      MIGRATION_DEFAULT_COMPLETION_TIMEOUT_PER_GIB_MS: '800000',
    });
    expect(c.migrationPolicyDefaults).toEqual({
      downtimeLimitMs: 500,
      maxBandwidthMibPerSec: 128.5,
      maxRounds: 10,
      autoConverge: true,
      xbzrle: true,
      xbzrleCacheMib: 128,
      multifdChannels: 1,
      completionTimeoutPerGibMs: 800_000,
    });
  });

  it('every variable has a default and a doc', () => {
    for (const [name, spec] of Object.entries(controllerEnv)) {
      expect(typeof spec.default, name).toBe('string');
      expect(spec.doc.length, name).toBeGreaterThan(0);
    }
  });

  it('reads MIGRATION_RETENTION as a duration with a unit (default 7 days)', () => {
    const retention = (value?: string) => loadControllerConfig({ AGENT_PLANE_INSECURE: '1', MIGRATION_RETENTION: value }).migrationRetentionMs;
    expect(retention()).toBe(7 * 86_400_000);
    expect(retention('7d')).toBe(7 * 86_400_000);
    expect(retention('12h')).toBe(12 * 3_600_000);
    expect(retention('30m')).toBe(30 * 60_000);
    expect(retention('90s')).toBe(90_000);
    expect(retention(' 2s ')).toBe(2_000);
    for (const bad of ['7', '1.5h', '-1d', '7w', 'd', '0s', '3651d']) expect(() => retention(bad), bad).toThrow(/MIGRATION_RETENTION/);
  });

  it('splits API_TOKENS on commas and drops blanks', () => {
    expect(loadControllerConfig({ AGENT_PLANE_INSECURE: '1', API_TOKENS: ' a, b ,,c' }).apiTokens).toEqual({ operator: ['a', 'b', 'c'], reader: [] });
  });

  it('reads reader tokens, and both scopes from API_TOKENS_FILE', () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vmm-tokens-'));
    try {
      const file = path.join(dir, 'tokens');
      writeFileSync(file, '# tokens\noperator op-2\n\nreader rd-2\n');
      expect(loadControllerConfig({ AGENT_PLANE_INSECURE: '1', API_TOKENS: 'op-1', API_READ_TOKENS: 'rd-1', API_TOKENS_FILE: file }).apiTokens).toEqual({
        operator: ['op-1', 'op-2'],
        reader: ['rd-1', 'rd-2'],
      });
      writeFileSync(file, 'admin x\n');
      expect(() => loadControllerConfig({ AGENT_PLANE_INSECURE: '1', API_TOKENS_FILE: file })).toThrow(/line 1: expected "operator <token>"/);
      expect(() => loadControllerConfig({ AGENT_PLANE_INSECURE: '1', API_TOKENS_FILE: path.join(dir, 'none') })).toThrow(/ENOENT/);
      expect(() => loadControllerConfig({ AGENT_PLANE_INSECURE: '1', API_TOKENS: 't', API_READ_TOKENS: 't' })).toThrow(/both an operator and a reader/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('needs certificates for the agent plane unless AGENT_PLANE_INSECURE=1, and the controller\'s own', async () => {
    expect(() => loadControllerConfig({})).toThrow(/set TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE/);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vmm-config-certs-'));
    try {
      await makeClusterCerts({ out: dir, nodes: ['node-1'] });
      const files = (owner: string) => ({ TLS_CA_FILE: path.join(dir, 'ca.pem'), TLS_CERT_FILE: path.join(dir, `${owner}.pem`), TLS_KEY_FILE: path.join(dir, `${owner}-key.pem`) });
      const c = loadControllerConfig({ ...files('controller'), API_TLS: '1' });
      expect(c.agentPlane).toMatchObject({ insecure: false, identity: { role: 'controller' } });
      expect(c.apiTls).toBeDefined();
      expect(() => loadControllerConfig(files('node-1'))).toThrow(/not a certificate of the controller/);
      expect(() => loadControllerConfig({ AGENT_PLANE_INSECURE: '1', API_TLS: '1' })).toThrow(/API_TLS/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it.each([
    ['CONTROLLER_PORT', 'abc'],
    ['CONTROLLER_PORT', '70000'],
    ['REPORT_INTERVAL_MS', '-5'],
    ['REPORT_INTERVAL_MS', '1.5'],
    ['REDIS_URL', 'localhost:6379'],
    ['REDIS_PREFIX', 'has space'],
    ['LOG_LEVEL', 'loud'],
    ['MAX_MIGRATIONS_CLUSTER', '0'],
    ['MEMORY_HIGH_WATERMARK_PERCENT', '0'],
    ['MEMORY_HIGH_WATERMARK_PERCENT', '101'],
    ['MEMORY_HIGH_WATERMARK_PERCENT', '90.5'],
    ['MEMORY_LOW_WATERMARK_PERCENT', '0'],
    ['MEMORY_LOW_WATERMARK_PERCENT', '90'],
    ['MEMORY_LOW_WATERMARK_PERCENT', '95'],
    ['MIGRATION_DEFAULT_DOWNTIME_LIMIT_MS', '0'],
    ['MIGRATION_DEFAULT_DOWNTIME_LIMIT_MS', '1.5'],
    ['MIGRATION_DEFAULT_MAX_BANDWIDTH_MIB_PER_SEC', '-1'],
    ['MIGRATION_DEFAULT_MAX_BANDWIDTH_MIB_PER_SEC', '0.5'],
    ['MIGRATION_DEFAULT_MAX_ROUNDS', '0'],
    ['MIGRATION_DEFAULT_MAX_ROUNDS', '100000'],
    ['MIGRATION_DEFAULT_AUTO_CONVERGE', 'yes'],
    ['MIGRATION_DEFAULT_XBZRLE', '1'],
    ['MIGRATION_DEFAULT_XBZRLE_CACHE_MIB', '0'],
    ['MIGRATION_DEFAULT_COMPLETION_TIMEOUT_PER_GIB_MS', '3000000000'],
  ])('rejects %s=%s naming the variable', (name, value) => {
    expect(() => loadControllerConfig({ AGENT_PLANE_INSECURE: '1', [name]: value })).toThrow(ConfigError);
    expect(() => loadControllerConfig({ AGENT_PLANE_INSECURE: '1', [name]: value })).toThrow(name);
  });

  it('reads the watermarks; the low one must stay below the high one', () => {
    expect(loadControllerConfig({ AGENT_PLANE_INSECURE: '1', MEMORY_HIGH_WATERMARK_PERCENT: '75', MEMORY_LOW_WATERMARK_PERCENT: '60' })).toMatchObject({
      memoryHighWatermarkPercent: 75,
      memoryLowWatermarkPercent: 60,
    });
    expect(() => loadControllerConfig({ AGENT_PLANE_INSECURE: '1', MEMORY_HIGH_WATERMARK_PERCENT: '70' })).toThrow(/MEMORY_LOW_WATERMARK_PERCENT.*below MEMORY_HIGH_WATERMARK_PERCENT \(70\)/);
  });
});
