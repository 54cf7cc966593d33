/**
 * Every Redis key of the controller, built in one place, all under `${REDIS_PREFIX}:`.
 *
 * node:<id>            hash   a node: capacity, ratios, address, cordoned, labels (JSON), allocation counters, last report
 * nodes                zset   node ids (score 0, lexicographic order for ListNodes)
 * vm:<id>              hash   a VM: spec, node, state, labels, group, created time, fencing epoch, measured fields
 * vms                  zset   every VM id (score 0; ids sort by creation time) for pagination
 * node-vms:<nodeId>    zset   the VM ids placed on a node (same ordering), for the node filter and reconcile
 * vm-names             hash   VM name → VM id
 * aa:<group>           hash   anti-affinity group: node id → number of the group's VMs on it
 * node-images:<nodeId> hash   image → number of VMs of that image on the node (KSM-sharing weigher)
 * mig:<id>             hash   a migration: ids, phase, progress fields, policy, reserved room, flags
 * migs                 zset   every migration id (score 0; ids sort by creation time)
 * vm-migs:<vmId>       zset   the migrations of one VM
 * mig-events:<id>      pubsub channel: the migration after each change (WatchMigration)
 * migs-open            set    migrations not final yet: the reconciler drives each to an end
 * node-tombstones:<id> hash   VM id → epoch of VMs deleted while their node was unreachable (destroyed when it reports them)
 * mig-active           set    migrations holding an in-flight slot (cluster limit)
 * mig-out:<nodeId>     set    … of which outbound from the node
 * mig-in:<nodeId>      set    … of which inbound to the node
 * req:<method>:<id>    hash   a request_id's call: its request's fingerprint, then its response (24 h)
 * rev                  string the cluster-wide revision: INCR per change of a VM, node or migration (lua/journal.lua.ts)
 * changes              stream the change history (kind, id, type[, last]) under ids `<revision>-0`, capped (WatchEvents)
 * ev-last              hash   record key → ms of its last change event (coalescing of reported figures)
 * changes-cap          string how many entries `changes` keeps (WATCH_HISTORY, set at start)
 * (BullMQ's own keys live under `${REDIS_PREFIX}:migrations:*`)
 */
export type RedisKeys = ReturnType<typeof redisKeys>;

export function redisKeys(prefix: string) {
  const p = `${prefix}:`;
  return {
    prefix: p,
    node: (nodeId: string) => `${p}node:${nodeId}`,
    nodes: () => `${p}nodes`,
    vm: (vmId: string) => `${p}vm:${vmId}`,
    vms: () => `${p}vms`,
    nodeVms: (nodeId: string) => `${p}node-vms:${nodeId}`,
    vmNames: () => `${p}vm-names`,
    antiAffinity: (group: string) => `${p}aa:${group}`,
    nodeImages: (nodeId: string) => `${p}node-images:${nodeId}`,
    migration: (id: string) => `${p}mig:${id}`,
    migrations: () => `${p}migs`,
    vmMigrations: (vmId: string) => `${p}vm-migs:${vmId}`,
    migrationEvents: (id: string) => `${p}mig-events:${id}`,
    migrationsOpen: () => `${p}migs-open`,
    nodeTombstones: (nodeId: string) => `${p}node-tombstones:${nodeId}`,
    migrationsActive: () => `${p}mig-active`,
    migrationsOut: (nodeId: string) => `${p}mig-out:${nodeId}`,
    migrationsIn: (nodeId: string) => `${p}mig-in:${nodeId}`,
    request: (method: string, requestId: string) => `${p}req:${method}:${requestId}`,
    // `rev` must stay three characters: the journal derives the prefix from it.
    revision: () => `${p}rev`,
    changes: () => `${p}changes`,
    changesLast: () => `${p}ev-last`,
    changesCap: () => `${p}changes-cap`,
    /** BullMQ queues take a prefix and a name, not a key. */
    queuePrefix: () => prefix,
  } as const;
}
