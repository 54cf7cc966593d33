/**
 * Every Redis key of the controller, built in one place, all under `${REDIS_PREFIX}:`.
 *
 * node:<id>            hash   a node: capacity, ratios, address, cordoned, allocation counters, last report
 * nodes                zset   node ids (score 0, lexicographic order for ListNodes)
 * vm:<id>              hash   a VM: spec, node, state, labels, group, created time, fencing epoch, measured fields
 * vms                  zset   every VM id (score 0; ids sort by creation time) for pagination
 * node-vms:<nodeId>    zset   the VM ids placed on a node (same ordering), for the node filter and reconcile
 * vm-names             hash   VM name → VM id
 * aa:<group>           hash   anti-affinity group: node id → number of the group's VMs on it
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
    /** BullMQ queues take a prefix and a name, not a key. */
    queuePrefix: () => prefix,
  } as const;
}
