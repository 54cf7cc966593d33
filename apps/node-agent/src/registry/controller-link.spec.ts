import { status } from '@grpc/grpc-js';
import { FramePool } from '@vmm/emulator';
import { afterEach, describe, expect, it } from 'vitest';
import { loadAgentConfig } from '../config.js';
import { FakeRegistry } from '../testing/fake-registry.js';
import { freePort, silentLogger, vmSpec } from '../testing/fixtures.js';
import { waitFor } from '../../../../test/support/wait-for.js';
import { VmManager } from '../vm/vm-manager.js';
import { ControllerLink } from './controller-link.js';
import { ReportBuilder } from './report-builder.js';

const cleanups: (() => unknown)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

function link(controllerPort: number): { link: ControllerLink; vms: VmManager } {
  const config = loadAgentConfig({ AGENT_PLANE_INSECURE: '1', NODE_ID: 'n1', CONTROLLER_ADDRESS: `127.0.0.1:${controllerPort}`, REPORT_INTERVAL_MS: '20' });
  const vms = new VmManager(new FramePool(), { maxVcpus: 8, maxMemoryMib: 256 }, silentLogger);
  const controllerLink = new ControllerLink({
    config,
    vms,
    reports: new ReportBuilder(vms, config),
    log: silentLogger,
    backoff: { baseMs: 10, capMs: 40 },
  });
  cleanups.push(() => vms.stopAll(), () => controllerLink.stop());
  return { link: controllerLink, vms };
}

describe('ControllerLink', () => {
  it('keeps retrying while no controller listens, and stops promptly', async () => {
    const { link: l } = link(await freePort());
    l.start();
    await waitFor(() => l.state === 'backoff', 5_000, 'a retry cycle');
    await waitFor(() => l.state === 'registering', 5_000, 'another attempt');
    const started = Date.now();
    await l.stop();
    expect(l.state).toBe('stopped');
    expect(Date.now() - started).toBeLessThan(2_000);
  });

  it('retries a refusing controller until it accepts, then reports', async () => {
    const registry = new FakeRegistry(await freePort(), 20, status.INTERNAL);
    await registry.start();
    cleanups.push(() => registry.kill());
    const { link: l, vms } = link(registry.port);
    vms.create(vmSpec({ vmId: 'a', image: 'empty' }));
    l.start();
    await waitFor(() => l.state === 'backoff', 5_000, 'two refused attempts');
    expect(l.registrations).toBe(0);
    registry.failRegisterWith = undefined;
    await waitFor(() => l.registrations === 1, 5_000, 'registration');
    expect(registry.registrations[0].vms.map((v) => v.vmId)).toEqual(['a']);
    await waitFor(() => registry.reports.length >= 3, 5_000, 'three reports');
    expect(registry.reports.every((r) => r.vms[0]?.vmId === 'a')).toBe(true);
  });

  it('half-closes the report stream on stop', async () => {
    const registry = new FakeRegistry(await freePort(), 20);
    await registry.start();
    cleanups.push(() => registry.kill());
    const { link: l } = link(registry.port);
    l.start();
    await waitFor(() => l.state === 'reporting' && registry.reports.length > 0, 5_000, 'reporting');
    await l.stop();
    await waitFor(() => registry.streamsEnded === 1, 5_000, 'the stream to end at the controller');
    const count = registry.reports.length;
    await new Promise((resolve) => setTimeout(resolve, 60));
    expect(registry.reports.length).toBe(count);
  });
});
