import 'reflect-metadata';
import { status } from '@grpc/grpc-js';
import { agent, cluster } from '@vmm/proto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startAgent, type RunningAgent } from '../agent.js';
import { loadAgentConfig } from '../config.js';
import { AgentCalls, codeOf } from '../testing/agent-calls.js';
import { FakeRegistry } from '../testing/fake-registry.js';
import { freePort, silentLogger, vmSpec } from '../testing/fixtures.js';
import { waitFor } from '../../../../test/support/wait-for.js';

// UpdateOutgoing between two real agents in one process, driven over gRPC as the controller does.
let registry: FakeRegistry;
let source: RunningAgent;
let target: RunningAgent;
let src: AgentCalls;
let dst: AgentCalls;

async function boot(nodeId: string): Promise<RunningAgent> {
  const config = loadAgentConfig({ AGENT_PLANE_INSECURE: '1', NODE_ID: nodeId, AGENT_PORT: String(await freePort()), CONTROLLER_ADDRESS: registry.address, LOG_LEVEL: 'silent' });
  return startAgent(config, silentLogger);
}

const TOKEN = 'token-0123456789';
const PRECOPY = cluster.MigrationPhase.MIGRATION_PHASE_PRECOPY;
const COMMITTING = cluster.MigrationPhase.MIGRATION_PHASE_COMMITTING;

beforeAll(async () => {
  registry = new FakeRegistry(await freePort());
  await registry.start();
  source = await boot('node-src');
  target = await boot('node-dst');
  src = new AgentCalls(source.address);
  dst = new AgentCalls(target.address);
});

afterAll(async () => {
  src?.close();
  dst?.close();
  await source?.stop();
  await target?.stop();
  registry?.kill();
});

describe('UpdateOutgoing', () => {
  it('force_complete switches a migration that would not converge over at the next round; refused once past pre-copy', async () => {
    const spec = vmSpec({
      vmId: 'vm-busy',
      image: 'alpine-3.20',
      memoryMib: 32,
      workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: 50_000, workingSetMib: 16, seed: 7 },
    });
    await src.call('createVm', { spec });
    await waitFor(() => (source.vms.get('vm-busy')?.vm.writesTotal ?? 0) > 100, 5_000, 'the workload to write');
    const { dataAddress } = await dst.call<agent.PrepareIncomingResponse>('prepareIncoming', { migrationId: 'm-upd', spec, token: TOKEN });
    const policy = { downtimeLimitMs: 1, maxRounds: 10_000, maxBandwidthMibPerSec: 64 };
    let forcedAtRound = -1;
    const updates: Promise<number>[] = [];
    const messages = await src.startOutgoing({ migrationId: 'm-upd', vmId: 'vm-busy', targetDataAddress: dataAddress, token: TOKEN, policy }, (m) => {
      if (m.phase !== PRECOPY || m.round < 2 || forcedAtRound >= 0) return;
      forcedAtRound = m.round;
      // A bad value first: INVALID_ARGUMENT, and nothing applied (the migration goes on).
      updates.push(codeOf(src.call('updateOutgoing', { migrationId: 'm-upd', downtimeLimitMs: 0 })));
      updates.push(codeOf(src.call('updateOutgoing', { migrationId: 'm-upd', forceComplete: true })));
      // The emulator's engine never holds at the switch-over; a vm_id that is not the migration's is refused first.
      updates.push(codeOf(src.call('continueSwitchover', { migrationId: 'm-upd', vmId: 'vm-other' })));
      updates.push(codeOf(src.call('continueSwitchover', { migrationId: 'm-upd', vmId: 'vm-busy' })));
    });
    expect(await Promise.all(updates)).toEqual([status.INVALID_ARGUMENT, status.OK, status.INVALID_ARGUMENT, status.FAILED_PRECONDITION]);
    const last = messages.at(-1)!;
    expect(last.phase).toBe(COMMITTING);
    expect(last.targetDigest).toBe(last.sourceDigest);
    // Every prediction missed the 1 ms limit: the force switched over, within a round or two of the call.
    const rounds = messages.filter((m) => m.phase === PRECOPY);
    expect(rounds.every((m) => m.expectedDowntimeMs > 1)).toBe(true);
    expect(Math.max(...rounds.map((m) => m.round))).toBeLessThanOrEqual(forcedAtRound + 2);

    // Ready (paused, verified): past pre-copy.
    expect(await codeOf(src.call('updateOutgoing', { migrationId: 'm-upd', downtimeLimitMs: 100 }))).toBe(status.FAILED_PRECONDITION);
    await src.call('abortMigration', { migrationId: 'm-upd', reason: 'test over', fencingEpoch: 0 });
    await dst.call('abortMigration', { migrationId: 'm-upd', reason: 'test over', fencingEpoch: 0 });
    expect(source.vms.require('vm-busy').vm.state).toBe('running');
  });

  it('NOT_FOUND for a migration this node does not send; INVALID_ARGUMENT for a bad id', async () => {
    expect(await codeOf(src.call('updateOutgoing', { migrationId: 'm-none', forceComplete: true }))).toBe(status.NOT_FOUND);
    expect(await codeOf(src.call('updateOutgoing', { migrationId: '', forceComplete: true }))).toBe(status.INVALID_ARGUMENT);
  });
});
