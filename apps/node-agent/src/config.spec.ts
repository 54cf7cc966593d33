import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { makeClusterCerts } from '@vmm/tls';
import { FramePool } from '@vmm/emulator';
import { describe, expect, it } from 'vitest';
import { agentEnv, loadAgentConfig } from './config.js';
import { ConfigError } from './errors.js';
import { KsmService } from './ksm/ksm.service.js';
import { silentLogger } from './testing/fixtures.js';

describe('loadAgentConfig', () => {
  it('applies the documented defaults to an empty environment', () => {
    const config = loadAgentConfig({ AGENT_PLANE_INSECURE: '1' });
    expect(config).toEqual({
      nodeId: os.hostname(),
      host: '127.0.0.1',
      port: 50052,
      advertiseAddress: '127.0.0.1:50052',
      controllerAddress: '127.0.0.1:50050',
      vcpus: 8,
      memoryMib: 8192,
      cpuAllocationRatio: 4,
      ramAllocationRatio: 1.5,
      reportIntervalMs: 1000,
      ksm: { run: 1, pagesToScan: 100, sleepMillisecs: 20, maxPageSharing: 256, useZeroPages: false },
      logLevel: 'info',
      stateDir: '',
      hypervisor: 'emulator',
      agentPlane: { insecure: true },
      logFormat: 'json',
      httpPort: 0,
      metricsUrl: '',
      switchoverHoldMs: 5_000,
    });
  });

  it('reads every variable', () => {
    const config = loadAgentConfig({ AGENT_PLANE_INSECURE: '1', 
      NODE_ID: 'node-a',
      AGENT_HOST: '0.0.0.0',
      AGENT_PORT: '6000',
      AGENT_ADVERTISE_ADDRESS: 'agent-a:6000',
      CONTROLLER_ADDRESS: 'controller:50051',
      NODE_VCPUS: '16',
      NODE_MEMORY_MIB: '4096',
      CPU_ALLOCATION_RATIO: '2',
      RAM_ALLOCATION_RATIO: '1.0',
      REPORT_INTERVAL_MS: '250',
      KSM_RUN: '0',
      KSM_PAGES_TO_SCAN: '500',
      KSM_SLEEP_MILLISECS: '5',
      KSM_MAX_PAGE_SHARING: '16',
      KSM_USE_ZERO_PAGES: '1',
      LOG_LEVEL: 'debug',
      AGENT_HTTP_PORT: '9102',
    });
    expect(config).toMatchObject({
      nodeId: 'node-a',
      host: '0.0.0.0',
      port: 6000,
      advertiseAddress: 'agent-a:6000',
      controllerAddress: 'controller:50051',
      vcpus: 16,
      memoryMib: 4096,
      cpuAllocationRatio: 2,
      ramAllocationRatio: 1,
      reportIntervalMs: 250,
      ksm: { run: 0, pagesToScan: 500, sleepMillisecs: 5, maxPageSharing: 16, useZeroPages: true },
      logLevel: 'debug',
      stateDir: '',
      httpPort: 9102,
      // Advertised at the host others reach the agent by.
      metricsUrl: 'http://agent-a:9102/metrics',
    });
  });

  it('reads the driver of the node (HYPERVISOR)', () => {
    expect(loadAgentConfig({ AGENT_PLANE_INSECURE: '1', HYPERVISOR: 'qemu' }).hypervisor).toBe('qemu');
    expect(loadAgentConfig({ AGENT_PLANE_INSECURE: '1', HYPERVISOR: ' emulator ' }).hypervisor).toBe('emulator');
  });

  it('derives the advertised address from host and port', () => {
    expect(loadAgentConfig({ AGENT_PLANE_INSECURE: '1', AGENT_HOST: '10.0.0.7', AGENT_PORT: '7000' }).advertiseAddress).toBe('10.0.0.7:7000');
  });

  it.each([
    ['AGENT_PORT', '0'],
    ['AGENT_PORT', '70000'],
    ['AGENT_PORT', 'http'],
    ['AGENT_PORT', '50.5'],
    ['NODE_VCPUS', '-1'],
    ['NODE_MEMORY_MIB', '0'],
    ['CPU_ALLOCATION_RATIO', '0'],
    ['RAM_ALLOCATION_RATIO', 'lots'],
    ['REPORT_INTERVAL_MS', '1'],
    ['KSM_RUN', '3'],
    ['KSM_PAGES_TO_SCAN', '-5'],
    ['KSM_MAX_PAGE_SHARING', '1'],
    ['KSM_USE_ZERO_PAGES', '2'],
    ['KSM_USE_ZERO_PAGES', 'yes'],
    ['LOG_LEVEL', 'loud'],
    ['CONTROLLER_ADDRESS', 'controller'],
    ['CONTROLLER_ADDRESS', 'controller:0'],
    ['AGENT_ADVERTISE_ADDRESS', 'no port'],
    ['NODE_ID', 'bad id with spaces'],
    ['HYPERVISOR', 'xen'],
    ['SWITCHOVER_HOLD_MS', '0'],
    ['SWITCHOVER_HOLD_MS', '3600000'],
  ])('rejects %s=%s naming the variable', (name, value) => {
    let error: unknown;
    try {
      loadAgentConfig({ AGENT_PLANE_INSECURE: '1', [name]: value });
    } catch (err) {
      error = err;
    }
    expect(error).toBeInstanceOf(ConfigError);
    expect((error as ConfigError).code).toBe('INVALID_CONFIG');
    expect((error as ConfigError).problems).toHaveLength(1);
    expect((error as ConfigError).message).toContain(`${name}=${JSON.stringify(value)}`);
  });

  it('lists every problem at once', () => {
    expect(() => loadAgentConfig({ AGENT_PLANE_INSECURE: '1', AGENT_PORT: 'x', KSM_RUN: '9' })).toThrow(/AGENT_PORT[\s\S]*KSM_RUN/);
  });

  it("runs the agent plane over mutual TLS with a certificate naming its NODE_ID, plaintext only when asked", async () => {
    expect(() => loadAgentConfig({ NODE_ID: 'node-1' })).toThrow(/set TLS_CA_FILE, TLS_CERT_FILE, TLS_KEY_FILE/);
    const dir = mkdtempSync(path.join(os.tmpdir(), 'vmm-agent-certs-'));
    try {
      await makeClusterCerts({ out: dir, nodes: ['node-1', 'node-2'] });
      const files = (owner: string) => ({ TLS_CA_FILE: path.join(dir, 'ca.pem'), TLS_CERT_FILE: path.join(dir, `${owner}.pem`), TLS_KEY_FILE: path.join(dir, `${owner}-key.pem`) });
      expect(loadAgentConfig({ NODE_ID: 'node-1', ...files('node-1') }).agentPlane).toMatchObject({ insecure: false, identity: { role: 'node', nodeId: 'node-1' } });
      expect(() => loadAgentConfig({ NODE_ID: 'node-1', ...files('node-2') })).toThrow(/not a certificate of node node-1/);
      expect(() => loadAgentConfig({ NODE_ID: 'node-1', ...files('controller') })).toThrow(/not a certificate of node node-1/);
      expect(() => loadAgentConfig({ NODE_ID: 'node-1', AGENT_PLANE_INSECURE: 'yes' })).toThrow(/AGENT_PLANE_INSECURE/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it('documents every variable it reads', () => {
    const config = loadAgentConfig({ AGENT_PLANE_INSECURE: '1' });
    expect(Object.keys(agentEnv).sort()).toEqual(
      [
        'NODE_ID', 'AGENT_HOST', 'AGENT_PORT', 'AGENT_ADVERTISE_ADDRESS', 'CONTROLLER_ADDRESS', 'NODE_VCPUS',
        'NODE_MEMORY_MIB', 'CPU_ALLOCATION_RATIO', 'RAM_ALLOCATION_RATIO', 'REPORT_INTERVAL_MS', 'KSM_RUN',
        'KSM_PAGES_TO_SCAN', 'KSM_SLEEP_MILLISECS', 'KSM_MAX_PAGE_SHARING', 'KSM_USE_ZERO_PAGES', 'LOG_LEVEL',
        'STATE_DIR', 'SWITCHOVER_HOLD_MS', 'HYPERVISOR', 'TLS_CA_FILE', 'TLS_CERT_FILE', 'TLS_KEY_FILE', 'AGENT_PLANE_INSECURE', 'AGENT_HTTP_PORT', 'LOG_FORMAT',
      ].sort(),
    );
    for (const entry of Object.values(agentEnv)) expect(entry.doc.length).toBeGreaterThan(0);
    expect(config.port).toBe(Number(agentEnv.AGENT_PORT.default));
  });

  it('starts ksmd with every KSM_* knob of the environment', () => {
    const { ksm } = loadAgentConfig({ AGENT_PLANE_INSECURE: '1', KSM_RUN: '0', KSM_PAGES_TO_SCAN: '64', KSM_SLEEP_MILLISECS: '7', KSM_MAX_PAGE_SHARING: '16', KSM_USE_ZERO_PAGES: '1' });
    const service = new KsmService(new FramePool(), ksm, silentLogger);
    expect(service.knobs()).toEqual({ run: 0, pagesToScan: 64, sleepMillisecs: 7, maxPageSharing: 16, useZeroPages: true });
    expect(new KsmService(new FramePool(), loadAgentConfig({ AGENT_PLANE_INSECURE: '1' }).ksm, silentLogger).knobs()).toMatchObject({ maxPageSharing: 256, useZeroPages: false });
  });
});
