/**
 * Lua helpers shared by the scripts (prepended to their source), so that what several scripts do to a
 * VM's placement is written once.
 */

/**
 * moveVm(k, vm, fromNodeId, toNodeId, toReserved): moves a VM's placement from one node to another: the
 * node-vms index, the image counts, vmCount, its vCPUs and memory and its anti-affinity membership.
 * `toReserved`: the target's room and membership were reserved already (a migration's commit), so only
 * vmCount, the index and the image count move there. A node hash that is gone is left alone.
 *   k = { fromNode, toNode, fromVms, toVms, fromImages, toImages, group }   (keys)
 *   vm = { id, vcpus, memoryMib, group, image }
 *
 * admissionRefusal(nodeKey, groupKey, nodeId, vm, nowMs, staleAfterMs): why the node cannot take the VM
 * now ('DRAINING', 'CORDONED', 'NOT_READY', 'NO_VCPUS', 'NO_MEMORY', 'ANTI_AFFINITY'; a draining node
 * is cordoned too, so the more telling reason comes first), or nil. One check for a new VM, a migration
 * target and an HA restart, so that the three admit alike (the allocation limit is
 * model.ts's allocationLimit).
 *   vm = { vcpus, memoryMib, group }
 */
/** What admissionRefusal returns: why a node cannot take a VM now. */
export type AdmissionRefusal = 'DRAINING' | 'CORDONED' | 'NOT_READY' | 'NO_VCPUS' | 'NO_MEMORY' | 'ANTI_AFFINITY';

export const LUA_HELPERS = `
local function has(list, value)
  for _, v in ipairs(list) do if v == value then return true end end
  return false
end
local function add(key, field, delta)
  if delta ~= 0 then redis.call('HINCRBY', key, field, delta) end
end
local function decrField(key, field)
  if redis.call('HINCRBY', key, field, -1) <= 0 then redis.call('HDEL', key, field) end
end
local function admissionRefusal(nodeKey, groupKey, nodeId, vm, nowMs, staleAfterMs)
  local f = redis.call('HMGET', nodeKey, 'cordoned', 'draining', 'lastReportMs', 'vcpus', 'memoryMib',
    'cpuAllocationRatio', 'ramAllocationRatio', 'vcpusAllocated', 'memoryMibAllocated')
  if f[2] == '1' then return 'DRAINING' end
  if f[1] == '1' then return 'CORDONED' end
  if nowMs - tonumber(f[3] or '0') > staleAfterMs then return 'NOT_READY' end
  if tonumber(f[8] or '0') + vm.vcpus > math.floor(tonumber(f[4]) * tonumber(f[6]) + 1e-6) then return 'NO_VCPUS' end
  if tonumber(f[9] or '0') + vm.memoryMib > math.floor(tonumber(f[5]) * tonumber(f[7]) + 1e-6) then return 'NO_MEMORY' end
  if vm.group ~= '' and tonumber(redis.call('HGET', groupKey, nodeId) or '0') > 0 then return 'ANTI_AFFINITY' end
  return nil
end
local function moveVm(k, vm, fromNodeId, toNodeId, toReserved)
  if redis.call('EXISTS', k.fromNode) == 1 then
    add(k.fromNode, 'vcpusAllocated', -vm.vcpus)
    add(k.fromNode, 'memoryMibAllocated', -vm.memoryMib)
    redis.call('HINCRBY', k.fromNode, 'vmCount', -1)
  end
  if redis.call('EXISTS', k.toNode) == 1 then
    if not toReserved then
      add(k.toNode, 'vcpusAllocated', vm.vcpus)
      add(k.toNode, 'memoryMibAllocated', vm.memoryMib)
    end
    redis.call('HINCRBY', k.toNode, 'vmCount', 1)
  end
  if vm.group ~= '' then
    decrField(k.group, fromNodeId)
    if not toReserved then redis.call('HINCRBY', k.group, toNodeId, 1) end
  end
  redis.call('ZREM', k.fromVms, vm.id)
  redis.call('ZADD', k.toVms, 0, vm.id)
  if vm.image ~= '' then
    decrField(k.fromImages, vm.image)
    redis.call('HINCRBY', k.toImages, vm.image, 1)
  end
end
`;
