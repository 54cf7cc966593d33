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

// Two real agents in one process, driven over gRPC the way the controller drives a migration.
let registry: FakeRegistry;
let source: RunningAgent;
let target: RunningAgent;
let src: AgentCalls;
let dst: AgentCalls;

async function boot(nodeId: string): Promise<RunningAgent> {
  const config = loadAgentConfig({ AGENT_PLANE_INSECURE: '1', 
    NODE_ID: nodeId,
    AGENT_PORT: String(await freePort()),
    CONTROLLER_ADDRESS: registry.address,
    LOG_LEVEL: 'silent',
  });
  return startAgent(config, silentLogger);
}

const busySpec = (vmId: string, rate = 2_000) =>
  vmSpec({
    vmId,
    image: 'alpine-3.20',
    memoryMib: 32,
    workload: { kind: cluster.WorkloadKind.WORKLOAD_KIND_UNIFORM, dirtyRatePagesPerSec: rate, workingSetMib: 4, seed: 11 },
  });

const TOKEN = 'token-0123456789';

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

describe('live migration between two agents', () => {
  it('refuses an incoming VM that would take the node past the memory it may allocate: RESOURCE_EXHAUSTED, nothing kept', async () => {
    // The default node: 8192 MiB × 1.5 allocatable.
    await dst.call('createVm', { spec: vmSpec({ vmId: 'vm-resident', memoryMib: 4096 }) });
    try {
      await expect(dst.call('prepareIncoming', { migrationId: 'm-over', spec: vmSpec({ vmId: 'vm-over', memoryMib: 8193 }), token: TOKEN })).rejects.toMatchObject({
        code: status.RESOURCE_EXHAUSTED,
        details: expect.stringMatching(/needs 8193 MiB but this node has 8192 MiB left/),
      });
      expect(target.vms.get('vm-over')).toBeUndefined();
    } finally {
      await dst.call('deleteVm', { vmId: 'vm-resident' });
    }
  });

  it('moves a running VM: COMMITTING with equal digests, commit resumes the target, release fences the source', async () => {
    const spec = busySpec('vm-move');
    await src.call('createVm', { spec });
    await waitFor(() => (source.vms.get('vm-move')?.vm.writesTotal ?? 0) > 20, 5_000, 'the workload to write');

    // Two concurrent calls (a controller retry racing the first) get the same listener.
    const [{ dataAddress }, concurrent] = await Promise.all([
      dst.call<agent.PrepareIncomingResponse>('prepareIncoming', { migrationId: 'm1', spec, token: TOKEN }),
      dst.call<agent.PrepareIncomingResponse>('prepareIncoming', { migrationId: 'm1', spec, token: TOKEN }),
    ]);
    expect(dataAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(concurrent.dataAddress).toBe(dataAddress);
    const again = await dst.call<agent.PrepareIncomingResponse>('prepareIncoming', { migrationId: 'm1', spec, token: TOKEN });
    expect(again.dataAddress).toBe(dataAddress);
    expect(target.vms.list()).toEqual([]); // not the controller's VM before the commit

    const messages = await src.startOutgoing({ migrationId: 'm1', vmId: 'vm-move', targetDataAddress: dataAddress, token: TOKEN, policy: undefined });
    const last = messages.at(-1)!;
    expect(last.phase).toBe(cluster.MigrationPhase.MIGRATION_PHASE_COMMITTING);
    expect(last.error).toBe('');
    expect(last.sourceDigest).toMatch(/^[0-9a-f]{16}$/);
    expect(last.targetDigest).toBe(last.sourceDigest);
    expect(last.pausedAtMs).toBeGreaterThan(0);
    expect(last.bytesSent).toBeGreaterThan(0);
    expect(messages.some((m) => m.phase === cluster.MigrationPhase.MIGRATION_PHASE_PRECOPY)).toBe(true);
    // The pause is forwarded once, when it happens, right before COMMITTING, with the pause time.
    const pauses = messages.filter((m) => m.phase === cluster.MigrationPhase.MIGRATION_PHASE_STOP_AND_COPY);
    expect(pauses.length).toBe(1);
    expect(messages.at(-2)).toBe(pauses[0]);
    expect(pauses[0]!.pausedAtMs).toBe(last.pausedAtMs);

    // Until the controller decides, the source is paused (MIGRATING) and nothing runs on the target.
    const sourceVm = source.vms.require('vm-move');
    expect(sourceVm.vm.state).toBe('paused');
    expect(source.vms.list()[0].state).toBe(cluster.VmState.VM_STATE_MIGRATING);
    const writesAtPause = sourceVm.vm.writesTotal;

    const { resumedAtMs } = await dst.call<agent.CommitIncomingResponse>('commitIncoming', { migrationId: 'm1', fencingEpoch: 1, vmId: 'vm-move' });
    expect(resumedAtMs).toBeGreaterThanOrEqual(last.pausedAtMs);
    const downtimeMs = resumedAtMs - last.pausedAtMs;
    expect(downtimeMs).toBeGreaterThanOrEqual(0);
    const retried = await dst.call<agent.CommitIncomingResponse>('commitIncoming', { migrationId: 'm1', fencingEpoch: 1, vmId: 'vm-move' });
    expect(retried.resumedAtMs).toBe(resumedAtMs);

    await src.call('releaseOutgoing', { migrationId: 'm1', vmId: 'vm-move', fencingEpoch: 1 });
    await src.call('releaseOutgoing', { migrationId: 'm1', vmId: 'vm-move', fencingEpoch: 1 });
    expect(source.vms.get('vm-move')).toBeUndefined();
    expect(source.vms.pool.framesInUse).toBe(0);
    // ksmd follows the VM: it left the source's scanner before its memory went, joined the target's at commit.
    expect(source.ksm.scanner.regionIds()).not.toContain('vm-move');
    expect(target.ksm.scanner.regionIds()).toContain('vm-move');

    const listed = await dst.call<agent.ListVmsResponse>('listVms', {});
    expect(listed.vms).toHaveLength(1);
    expect(listed.vms[0]).toMatchObject({ vmId: 'vm-move', state: cluster.VmState.VM_STATE_RUNNING, fencingEpoch: 1 });
    // The workload continues on the target where it paused on the source.
    await waitFor(() => (target.vms.get('vm-move')?.vm.writesTotal ?? 0) > writesAtPause, 5_000, 'the target workload to continue');

    // The source may never run it again under the old epoch.
    expect(await codeOf(src.call('createVm', { spec }))).toBe(status.FAILED_PRECONDITION);
    expect(await codeOf(src.call('abortMigration', { migrationId: 'm1', reason: 'late', fencingEpoch: 0 }))).toBe(status.FAILED_PRECONDITION);
  });

  it('rolls back when aborted after the transfer: the source resumes, the target discards', async () => {
    const spec = busySpec('vm-abort');
    await src.call('createVm', { spec });
    const { dataAddress } = await dst.call<agent.PrepareIncomingResponse>('prepareIncoming', { migrationId: 'm2', spec, token: TOKEN });
    const messages = await src.startOutgoing({ migrationId: 'm2', vmId: 'vm-abort', targetDataAddress: dataAddress, token: TOKEN, policy: undefined });
    expect(messages.at(-1)!.phase).toBe(cluster.MigrationPhase.MIGRATION_PHASE_COMMITTING);

    await src.call('abortMigration', { migrationId: 'm2', reason: 'test', fencingEpoch: 0 });
    await dst.call('abortMigration', { migrationId: 'm2', reason: 'test', fencingEpoch: 0 });
    expect(source.vms.require('vm-abort').vm.state).toBe('running');
    expect(source.vms.list().find((v) => v.vmId === 'vm-abort')?.state).toBe(cluster.VmState.VM_STATE_RUNNING);
    expect(target.vms.get('vm-abort')).toBeUndefined();
    // A discarded incoming copy is gone for good (INCOMING_LOST): the controller may resume the source instead.
    expect(await codeOf(dst.call('commitIncoming', { migrationId: 'm2', fencingEpoch: 1, vmId: 'vm-abort' }))).toBe(status.DATA_LOSS);
    await src.call('deleteVm', { vmId: 'vm-abort' });
  });

  it('a discarded incoming end is not kept (nor its VM, connection or transfer); later calls are answered from the ledger (#9: RSS)', async () => {
    const spec = busySpec('vm-kept');
    await src.call('createVm', { spec });
    const { dataAddress } = await dst.call<agent.PrepareIncomingResponse>('prepareIncoming', { migrationId: 'm-kept', spec, token: TOKEN });
    const messages = await src.startOutgoing({ migrationId: 'm-kept', vmId: 'vm-kept', targetDataAddress: dataAddress, token: TOKEN, policy: undefined });
    expect(messages.at(-1)!.phase).toBe(cluster.MigrationPhase.MIGRATION_PHASE_COMMITTING);
    await src.call('abortMigration', { migrationId: 'm-kept', reason: 'test', fencingEpoch: 0 });
    await dst.call('abortMigration', { migrationId: 'm-kept', reason: 'test', fencingEpoch: 0 });
    // Kept for RETAIN_RUNNER_MS (10 minutes), every aborted migration held its VM's page tables, its data
    // connection and its receiver that long: the fuzzer's 10-minute runs saw the target's RSS grow by it.
    const incoming = (target.migrations as unknown as { incoming: Map<string, unknown> }).incoming;
    await waitFor(() => !incoming.has('m-kept'), 5_000, 'the discarded end dropped');
    expect(target.vms.get('vm-kept')).toBeUndefined();
    // The ledger still answers: a commit of the lost copy is INCOMING_LOST (DATA_LOSS), an abort is fine.
    expect(await codeOf(dst.call('commitIncoming', { migrationId: 'm-kept', fencingEpoch: 2, vmId: 'vm-kept' }))).toBe(status.DATA_LOSS);
    expect(await codeOf(dst.call('abortMigration', { migrationId: 'm-kept', reason: 'again', fencingEpoch: 0 }))).toBe(status.OK);
    await src.call('deleteVm', { vmId: 'vm-kept' });
  });

  it('carries out decisions with their epochs and refuses ones that contradict what it applied', async () => {
    const spec = busySpec('vm-decide');
    await src.call('createVm', { spec: { ...spec, fencingEpoch: 1 } });
    const { dataAddress } = await dst.call<agent.PrepareIncomingResponse>('prepareIncoming', { migrationId: 'm9', spec: { ...spec, fencingEpoch: 1 }, token: TOKEN });
    const messages = await src.startOutgoing({ migrationId: 'm9', vmId: 'vm-decide', targetDataAddress: dataAddress, token: TOKEN, policy: undefined });
    expect(messages.at(-1)!.phase).toBe(cluster.MigrationPhase.MIGRATION_PHASE_COMMITTING);
    // The target commits at N+1 = 2; a commit at another epoch contradicts it, an abort too.
    await dst.call('commitIncoming', { migrationId: 'm9', fencingEpoch: 2, vmId: 'vm-decide' });
    expect(await codeOf(dst.call('commitIncoming', { migrationId: 'm9', fencingEpoch: 3, vmId: 'vm-decide' }))).toBe(status.FAILED_PRECONDITION);
    expect(await codeOf(dst.call('abortMigration', { migrationId: 'm9', reason: 'late', fencingEpoch: 1 }))).toBe(status.FAILED_PRECONDITION);
    expect(target.vms.require('vm-decide').vm.state).toBe('running');
    // The source, paused and verified, resumes only when told, here under a reverted epoch N+2 = 3,
    // and then refuses a release for the same migration (it applied the resume).
    expect(source.vms.require('vm-decide').vm.state).toBe('paused');
    await src.call('abortMigration', { migrationId: 'm9', reason: 'reverted', fencingEpoch: 3 });
    expect(source.vms.require('vm-decide')).toMatchObject({ fencingEpoch: 3, role: 'none' });
    expect(source.vms.require('vm-decide').vm.state).toBe('running');
    expect(await codeOf(src.call('releaseOutgoing', { migrationId: 'm9', vmId: 'vm-decide', fencingEpoch: 2 }))).toBe(status.FAILED_PRECONDITION);
    expect(source.vms.get('vm-decide')).toBeDefined();
    await src.call('deleteVm', { vmId: 'vm-decide' });
    await dst.call('deleteVm', { vmId: 'vm-decide' });
  });

  it('fails cleanly on a wrong token and on a policy that cannot converge, keeping the source running', async () => {
    const spec = busySpec('vm-fail', 20_000);
    await src.call('createVm', { spec });
    const { dataAddress } = await dst.call<agent.PrepareIncomingResponse>('prepareIncoming', { migrationId: 'm3', spec, token: TOKEN });

    const wrong = await src.startOutgoing({ migrationId: 'm3', vmId: 'vm-fail', targetDataAddress: dataAddress, token: 'not-the-token', policy: undefined });
    expect(wrong.at(-1)!.phase).toBe(cluster.MigrationPhase.MIGRATION_PHASE_FAILED);
    expect(wrong.at(-1)!.errorReason).toBe('PEER_ERROR');
    expect(wrong.at(-1)!.error).toMatch(/TOKEN_MISMATCH/);
    expect(source.vms.require('vm-fail').vm.state).toBe('running');

    // The listener still waits for the right sender; this one cannot converge (1 round, 1 ms limit at 50 MiB/s).
    const policy: cluster.MigrationPolicy = {
      downtimeLimitMs: 1, maxBandwidthMibPerSec: 50, maxRounds: 1, autoConverge: false, xbzrle: false,
    };
    const stuck = await src.startOutgoing({ migrationId: 'm3', vmId: 'vm-fail', targetDataAddress: dataAddress, token: TOKEN, policy });
    expect(stuck.at(-1)!.phase).toBe(cluster.MigrationPhase.MIGRATION_PHASE_FAILED);
    expect(stuck.at(-1)!.errorReason).toBe('NOT_CONVERGED');
    expect(source.vms.require('vm-fail').vm.state).toBe('running');
    await waitFor(() => target.vms.get('vm-fail') === undefined, 5_000, 'the target to discard');
    await src.call('deleteVm', { vmId: 'vm-fail' });
  });

  it('rolls back when aborted mid-transfer, and when the controller drops the StartOutgoing call', async () => {
    const spec = busySpec('vm-slow');
    await src.call('createVm', { spec });
    // 2 MiB/s: round 0 alone (16 MiB of image) takes seconds, so the aborts land before the switch-over.
    const slow: cluster.MigrationPolicy = {
      downtimeLimitMs: 300, maxBandwidthMibPerSec: 2, maxRounds: 30, autoConverge: false, xbzrle: false,
    };
    for (const [migrationId, how] of [['m6', 'abort'], ['m7', 'cancel']] as const) {
      const { dataAddress } = await dst.call<agent.PrepareIncomingResponse>('prepareIncoming', { migrationId, spec, token: TOKEN });
      const request = { migrationId, vmId: 'vm-slow', targetDataAddress: dataAddress, token: TOKEN, policy: slow };
      if (how === 'abort') {
        const done = src.startOutgoing(request);
        await waitFor(() => source.vms.get('vm-slow')?.role === 'outgoing', 5_000, 'a sending migration');
        await src.call('abortMigration', { migrationId, reason: 'operator', fencingEpoch: 0 });
        const messages = await done;
        expect(messages.at(-1)!.phase).toBe(cluster.MigrationPhase.MIGRATION_PHASE_CANCELLED);
        expect(messages.at(-1)!.errorReason).toBe('CANCELLED');
      } else {
        const call = src.client.startOutgoing(agent.StartOutgoingRequest.fromPartial(request));
        call.on('error', () => {});
        await waitFor(() => source.vms.get('vm-slow')?.role === 'outgoing', 5_000, 'a sending migration');
        call.cancel();
      }
      await waitFor(() => source.vms.get('vm-slow')?.role === 'none', 5_000, `the source to roll back (${how})`);
      expect(source.vms.require('vm-slow').vm.state).toBe('running');
      await waitFor(() => target.vms.get('vm-slow') === undefined, 5_000, `the target to discard (${how})`);
    }
    await src.call('deleteVm', { vmId: 'vm-slow' });
  });

  it('shuts down cleanly with an outgoing migration in flight; the target discards', async () => {
    const third = await boot('node-3');
    const calls = new AgentCalls(third.address);
    try {
      const spec = busySpec('vm-shutdown');
      await calls.call('createVm', { spec });
      const { dataAddress } = await dst.call<agent.PrepareIncomingResponse>('prepareIncoming', { migrationId: 'm8', spec, token: TOKEN });
      const slow: cluster.MigrationPolicy = {
        downtimeLimitMs: 300, maxBandwidthMibPerSec: 2, maxRounds: 30, autoConverge: false, xbzrle: false,
      };
      const stream = calls.startOutgoing({ migrationId: 'm8', vmId: 'vm-shutdown', targetDataAddress: dataAddress, token: TOKEN, policy: slow });
      stream.catch(() => undefined);
      await waitFor(() => third.vms.get('vm-shutdown')?.role === 'outgoing', 5_000, 'a sending migration');
      await third.stop();
      expect(third.vms.size).toBe(0);
      expect(third.vms.pool.framesInUse).toBe(0);
      await waitFor(() => target.vms.get('vm-shutdown') === undefined, 5_000, 'the target to discard');
    } finally {
      calls.close();
      await third.stop();
    }
  });

  it('rejects bad migration requests with the right status', async () => {
    const spec = busySpec('vm-bad');
    await src.call('createVm', { spec });
    const start = (overrides: Partial<agent.StartOutgoingRequest>) =>
      src.startOutgoing({ migrationId: 'm4', vmId: 'vm-bad', targetDataAddress: '127.0.0.1:1', token: TOKEN, policy: undefined, ...overrides });
    expect(await codeOf(start({ vmId: 'nope' }))).toBe(status.NOT_FOUND);
    expect(await codeOf(start({ targetDataAddress: 'nowhere' }))).toBe(status.INVALID_ARGUMENT);
    expect(await codeOf(start({ token: '' }))).toBe(status.INVALID_ARGUMENT);
    const badPolicy = { downtimeLimitMs: -5, maxBandwidthMibPerSec: 0, maxRounds: 0, autoConverge: false, xbzrle: false, completionTimeoutMs: 0, xbzrleCacheMib: 0 };
    expect(await codeOf(start({ policy: badPolicy }))).toBe(status.INVALID_ARGUMENT);
    expect(source.vms.require('vm-bad').role).toBe('none');
    // A target that is not listening: the stream ends FAILED, the VM runs on.
    const refused = await start({});
    expect(refused.at(-1)!.phase).toBe(cluster.MigrationPhase.MIGRATION_PHASE_FAILED);
    expect(refused.at(-1)!.errorReason).toBe('CONNECTION_LOST');
    expect(source.vms.require('vm-bad').vm.state).toBe('running');

    expect(await codeOf(dst.call('prepareIncoming', { migrationId: 'm5', spec: { ...spec, image: 'nope' }, token: TOKEN }))).toBe(status.INVALID_ARGUMENT);
    expect(await codeOf(dst.call('prepareIncoming', { migrationId: 'm5', spec, token: 'short' }))).toBe(status.INVALID_ARGUMENT);
    expect(await codeOf(src.call('prepareIncoming', { migrationId: 'm5', spec, token: TOKEN }))).toBe(status.FAILED_PRECONDITION);
    expect(target.vms.get('vm-bad')).toBeUndefined();
    await src.call('deleteVm', { vmId: 'vm-bad' });
  });
});
