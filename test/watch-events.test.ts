// WatchEvents and the lists' revision (docs/api.md, "Watching"), against a real controller and agents:
// a watch from 0 sees every current object ADDED, then creates, a migration and a delete in order
// under increasing revisions; a watch resumed from the last revision seen across a controller restart
// sees only later changes, a drain's migrations among them; a revision older than the history kept ends
// with OUT_OF_RANGE; a reader token may watch.
import type { ServiceError } from '@grpc/grpc-js';
import { afterAll, beforeAll, expect, it } from 'vitest';
import { cluster, decodeStatusDetails, STATUS_DETAILS_TRAILER } from '@vmm/proto';
import type { ClusterApi } from '@vmm/local-cluster/grpc-client';
import { startTestCluster, stopTestCluster, type TestCluster } from './support/cluster.js';
import { status } from './support/grpc.js';
import { vmRequest } from './support/vms.js';
import { waitFor } from './support/wait-for.js';

const TOKEN = 'op-token';
const READER = 'read-token';
/** The controller's WATCH_HISTORY here: small, so that the test can outgrow it. */
const HISTORY = 100;
const { EventType, EventKind, MigrationPhase } = cluster;

let c: TestCluster;
let api: ClusterApi;
let reader: ClusterApi;
const vmIds: string[] = [];

beforeAll(async () => {
  c = await startTestCluster({ agents: 2, token: TOKEN, readToken: READER, controllerEnv: { WATCH_HISTORY: String(HISTORY) } });
  api = c.api();
  reader = c.api(READER);
});

afterAll(async () => {
  reader?.close();
  await stopTestCluster(c, api, vmIds);
});

interface Watch {
  events: cluster.Event[];
  /** Settles when the stream ends: undefined for a clean end or our cancel, else its error. */
  ended: Promise<ServiceError | undefined>;
  close(): void;
}

function watch(client: ClusterApi, request: Partial<cluster.WatchEventsRequest>): Watch {
  const events: cluster.Event[] = [];
  const call = client.client.watchEvents(cluster.WatchEventsRequest.fromPartial(request));
  let cancelled = false;
  const ended = new Promise<ServiceError | undefined>((resolve) => {
    call.on('data', (e: cluster.Event) => events.push(e));
    call.on('end', () => resolve(undefined));
    call.on('error', (err: ServiceError) => resolve(cancelled && err.code === status.CANCELLED ? undefined : err));
  });
  return {
    events,
    ended,
    close: () => {
      cancelled = true;
      call.cancel();
    },
  };
}

const idOf = (e: cluster.Event) => e.vm?.vmId ?? e.node?.nodeId ?? e.migration?.migrationId ?? '';
const find = (w: Watch, pred: (e: cluster.Event) => boolean, what: string) => waitFor(() => w.events.find(pred), 30_000, what);

/** Revisions strictly increase over the changes (the snapshot's ADDED share one revision). */
function expectIncreasing(events: readonly cluster.Event[]): void {
  for (let i = 1; i < events.length; i++) expect(events[i]!.revision, `event ${i} after ${events[i - 1]!.revision}`).toBeGreaterThan(events[i - 1]!.revision);
}

let lastSeen = 0;
let firstVmId = '';

it('lists carry a revision; a reader watching from 0 sees every object ADDED, then each change in order', async () => {
  await waitFor(async () => (await api.listNodes({})).nodes.length === 2, 15_000, 'both nodes registered');
  const vms = await reader.listVms({});
  const nodes = await reader.listNodes({});
  const migrations = await reader.listMigrations({});
  expect(vms.revision).toBeGreaterThan(0);
  expect(nodes.revision).toBeGreaterThanOrEqual(vms.revision);
  expect(migrations.revision).toBeGreaterThanOrEqual(nodes.revision);

  const w = watch(reader, { sinceRevision: 0 });
  const onlyMigrations = watch(reader, { sinceRevision: migrations.revision, kinds: [EventKind.EVENT_KIND_MIGRATION] });
  try {
    // The snapshot: both nodes ADDED at one revision, at least the lists'.
    await waitFor(() => w.events.filter((e) => e.node && e.type === EventType.EVENT_TYPE_ADDED).length >= 2, 15_000, 'the nodes ADDED');
    const snapshot = w.events.slice(0, 2);
    expect(snapshot.map((e) => e.node?.nodeId).sort()).toEqual(['node-1', 'node-2']);
    expect(snapshot[0]!.revision).toBe(snapshot[1]!.revision);
    expect(snapshot[0]!.revision).toBeGreaterThanOrEqual(migrations.revision);

    const vm = await api.createVm(vmRequest({ nodeId: 'node-1' }));
    vmIds.push(vm.vmId);
    firstVmId = vm.vmId;
    const added = await find(w, (e) => e.vm?.vmId === vm.vmId && e.type === EventType.EVENT_TYPE_ADDED, 'the VM ADDED');
    await find(w, (e) => e.vm?.vmId === vm.vmId && e.vm.state === cluster.VmState.VM_STATE_RUNNING, 'the VM RUNNING');

    const m = await api.migrateVm(cluster.MigrateVmRequest.fromPartial({ vmId: vm.vmId, targetNodeId: 'node-2' }));
    const migAdded = await find(w, (e) => e.migration?.migrationId === m.migrationId && e.type === EventType.EVENT_TYPE_ADDED, 'the migration ADDED');
    await find(w, (e) => e.migration?.migrationId === m.migrationId && e.migration.phase === MigrationPhase.MIGRATION_PHASE_COMPLETED, 'the migration COMPLETED');
    await find(w, (e) => e.vm?.vmId === vm.vmId && e.vm.nodeId === 'node-2' && e.vm.state === cluster.VmState.VM_STATE_RUNNING, 'the VM RUNNING on node-2');

    await api.deleteVm(cluster.DeleteVmRequest.fromPartial({ vmId: vm.vmId }));
    const deleted = await find(w, (e) => e.vm?.vmId === vm.vmId && e.type === EventType.EVENT_TYPE_DELETED, 'the VM DELETED');
    // DELETED carries the object as it was last.
    expect(deleted.vm).toMatchObject({ vmId: vm.vmId, name: vm.name, nodeId: 'node-2' });

    expect(added.revision).toBeGreaterThan(snapshot[0]!.revision);
    expect(migAdded.revision).toBeGreaterThan(added.revision);
    expect(deleted.revision).toBeGreaterThan(migAdded.revision);
    expectIncreasing(w.events.slice(2));
    expect(w.events.filter((e) => e.type === EventType.EVENT_TYPE_DELETED && e.vm?.vmId === vm.vmId)).toHaveLength(1);

    // The kinds filter: migrations only, the same ones in the same order.
    await waitFor(() => onlyMigrations.events.some((e) => e.migration?.phase === MigrationPhase.MIGRATION_PHASE_COMPLETED), 15_000, 'the filtered watch sees COMPLETED');
    expect(onlyMigrations.events.every((e) => e.migration !== undefined)).toBe(true);
    expect(onlyMigrations.events[0]).toMatchObject({ type: EventType.EVENT_TYPE_ADDED, migration: { migrationId: m.migrationId } });
    expectIncreasing(onlyMigrations.events);
    lastSeen = w.events.at(-1)!.revision;
  } finally {
    w.close();
    onlyMigrations.close();
  }
  expect(await w.ended).toBeUndefined();
});

it('resumes from the last revision seen across a controller restart, with only later changes', async () => {
  expect(lastSeen).toBeGreaterThan(0);
  api.close();
  reader.close();
  await c.restartController('SIGTERM');
  api = c.api();
  reader = c.api(READER);
  const restartedAt = Date.now();
  await waitFor(
    async () => (await api.listNodes({})).nodes.every((n) => n.state === cluster.NodeState.NODE_STATE_READY && n.lastReportMs > restartedAt),
    20_000,
    'agents reporting to the new controller',
  );
  // The revision survived the restart.
  expect((await reader.listVms({})).revision).toBeGreaterThanOrEqual(lastSeen);

  const w = watch(reader, { sinceRevision: lastSeen });
  try {
    const vm = await api.createVm(vmRequest({ nodeId: 'node-1' }));
    vmIds.push(vm.vmId);
    await find(w, (e) => e.vm?.vmId === vm.vmId && e.type === EventType.EVENT_TYPE_ADDED, 'the new VM ADDED');
    expect(w.events.every((e) => e.revision > lastSeen)).toBe(true);
    expect(w.events.some((e) => e.vm?.vmId === firstVmId)).toBe(false);
    expect(w.events.some((e) => e.type === EventType.EVENT_TYPE_ADDED && e.node)).toBe(false);
    expectIncreasing(w.events);

    // A drain's migrations appear as ADDED migrations like any other.
    await api.drainNode(cluster.DrainNodeRequest.fromPartial({ nodeId: 'node-1' }));
    const drained = await find(w, (e) => e.migration?.vmId === vm.vmId && e.type === EventType.EVENT_TYPE_ADDED, 'the drain migration ADDED');
    expect(drained.migration?.reason).toBe('drain');
    await find(w, (e) => e.migration?.migrationId === drained.migration!.migrationId && e.migration.phase === MigrationPhase.MIGRATION_PHASE_COMPLETED, 'the drain migration COMPLETED');
    await find(w, (e) => e.node?.nodeId === 'node-1' && e.node.state === cluster.NodeState.NODE_STATE_DRAINING, 'node-1 DRAINING');
    expectIncreasing(w.events);
  } finally {
    w.close();
    await api.uncordonNode({ nodeId: 'node-1' });
  }
});

it('a revision older than the history kept ends the watch with OUT_OF_RANGE (REVISION_COMPACTED)', async () => {
  // Outgrow the history: each cordon or uncordon is one change of node-2.
  for (let i = 0; i < HISTORY + 10; i++) {
    if (i % 2 === 0) await api.cordonNode({ nodeId: 'node-2' });
    else await api.uncordonNode({ nodeId: 'node-2' });
  }
  await api.uncordonNode({ nodeId: 'node-2' });
  const w = watch(reader, { sinceRevision: 1 });
  const err = await w.ended;
  expect(err?.code, err?.details).toBe(status.OUT_OF_RANGE);
  const [trailer] = err!.metadata.get(STATUS_DETAILS_TRAILER);
  expect(decodeStatusDetails(trailer as Buffer).errorInfo).toMatchObject({ reason: 'REVISION_COMPACTED', domain: 'cluster.v1' });
  expect(w.events).toEqual([]);

  // Listing again and watching from the list's revision works.
  const { revision } = await reader.listNodes({});
  const again = watch(reader, { sinceRevision: revision, kinds: [EventKind.EVENT_KIND_NODE] });
  try {
    await api.cordonNode({ nodeId: 'node-1' });
    const e = await find(again, (x) => x.node?.nodeId === 'node-1' && x.node.cordoned, 'node-1 cordoned');
    expect(e).toMatchObject({ type: EventType.EVENT_TYPE_MODIFIED });
    expect(e.revision).toBeGreaterThan(revision);
    expect(idOf(e)).toBe('node-1');
  } finally {
    again.close();
    await api.uncordonNode({ nodeId: 'node-1' });
  }
});
