import { LUA_HELPERS } from './shared.lua.js';

/**
 * Lua scripts for placing and removing VMs: the admission check and every index change happen in one
 * atomic step, so two concurrent requests can never both take the last room on a node.
 */

/**
 * Reserve room for a VM on one node and record the VM (its fields from the caller), all at once.
 *
 * Input:
 *   KEYS[1] node hash          KEYS[2] vm-names hash     KEYS[3] the group's anti-affinity hash (any key without a group)
 *   KEYS[4] vm hash (new)      KEYS[5] vms zset          KEYS[6] node-vms zset   KEYS[7] node-images hash
 *   ARGV[1] { vmId, name, vcpus, memoryMib, group ('' = none), nodeId, nowMs, staleAfterMs,
 *             adopt (skip ready/cordon/capacity checks: the VM already runs there), fields: { vm hash } }
 * Output:
 *   'OK' | 'NO_NODE' | 'NAME_TAKEN' | 'VM_EXISTS' | 'CORDONED' | 'DRAINING' | 'NOT_READY'
 *   | 'NO_VCPUS' | 'NO_MEMORY' | 'ANTI_AFFINITY'
 */
export const RESERVE_VM_LUA = `${LUA_HELPERS}
local a = cjson.decode(ARGV[1])
local nodeKey = KEYS[1]
if redis.call('EXISTS', nodeKey) == 0 then return 'NO_NODE' end
if redis.call('HEXISTS', KEYS[2], a.name) == 1 then return 'NAME_TAKEN' end
if redis.call('EXISTS', KEYS[4]) == 1 then return 'VM_EXISTS' end
local vcpus, mem, group, nodeId = a.vcpus, a.memoryMib, a.group, a.nodeId
if not a.adopt then
  local refusal = admissionRefusal(nodeKey, KEYS[3], nodeId, { vcpus = vcpus, memoryMib = mem, group = group }, a.nowMs, a.staleAfterMs)
  if refusal then return refusal end
end
redis.call('HINCRBY', nodeKey, 'vcpusAllocated', vcpus)
redis.call('HINCRBY', nodeKey, 'memoryMibAllocated', mem)
redis.call('HINCRBY', nodeKey, 'vmCount', 1)
if group ~= '' then redis.call('HINCRBY', KEYS[3], nodeId, 1) end
redis.call('HSET', KEYS[2], a.name, a.vmId)
local flat = {}
for k, v in pairs(a.fields) do flat[#flat + 1] = k; flat[#flat + 1] = v end
redis.call('HSET', KEYS[4], unpack(flat))
redis.call('ZADD', KEYS[5], 0, a.vmId)
redis.call('ZADD', KEYS[6], 0, a.vmId)
local image = a.fields.image or ''
if image ~= '' then redis.call('HINCRBY', KEYS[7], image, 1) end
return 'OK'
`;

/**
 * Remove a VM and give back everything it held: allocation on its node, anti-affinity membership,
 * its name, its index entries. Idempotent. The caller read the VM's node and group to name their
 * keys; when the VM moved meanwhile the script changes nothing and says so, and the caller reads again.
 *
 * Input:
 *   KEYS[1] vm hash   KEYS[2] vm-names hash   KEYS[3] vms zset   KEYS[4] its node hash
 *   KEYS[5] its node's node-vms zset   KEYS[6] its node's node-images hash
 *   KEYS[7] its group's anti-affinity hash (any key without a group)
 *   ARGV[1] { vmId, nodeId, group } as the caller read them
 * Output: 1 if removed, 0 if there was no such VM, -1 if its node or group is not the one read
 */
export const RELEASE_VM_LUA = `
local a = cjson.decode(ARGV[1])
local vmKey = KEYS[1]
if redis.call('EXISTS', vmKey) == 0 then return 0 end
local f = redis.call('HMGET', vmKey, 'nodeId', 'name', 'vcpus', 'memoryMib', 'antiAffinityGroup', 'image')
local nodeId, name, vcpus, mem, group = f[1] or '', f[2], tonumber(f[3] or '0'), tonumber(f[4] or '0'), f[5] or ''
if nodeId ~= a.nodeId or group ~= a.group then return -1 end
local image = f[6] or ''
if redis.call('EXISTS', KEYS[4]) == 1 then
  redis.call('HINCRBY', KEYS[4], 'vcpusAllocated', -vcpus)
  redis.call('HINCRBY', KEYS[4], 'memoryMibAllocated', -mem)
  redis.call('HINCRBY', KEYS[4], 'vmCount', -1)
end
if group ~= '' then
  if redis.call('HINCRBY', KEYS[7], nodeId, -1) <= 0 then redis.call('HDEL', KEYS[7], nodeId) end
end
if name and redis.call('HGET', KEYS[2], name) == a.vmId then redis.call('HDEL', KEYS[2], name) end
redis.call('ZREM', KEYS[3], a.vmId)
redis.call('ZREM', KEYS[5], a.vmId)
if image ~= '' then
  if redis.call('HINCRBY', KEYS[6], image, -1) <= 0 then redis.call('HDEL', KEYS[6], image) end
end
redis.call('DEL', vmKey)
return 1
`;

/**
 * Set a VM's state only if it is in one of the expected states (compare-and-set).
 *
 * Input:  KEYS[1] vm hash   ARGV[1] new state   ARGV[2..] expected states
 * Output: 1 if set, 0 if the VM is missing or in another state
 */
export const SET_VM_STATE_LUA = `
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return 0 end
for i = 2, #ARGV do
  if cur == ARGV[i] then
    redis.call('HSET', KEYS[1], 'state', ARGV[1])
    return 1
  end
end
return 0
`;

/**
 * Move a VM for a restart (RESTART_POLICY_ALWAYS): from the node it was lost on to `newNodeId` (the
 * same node is allowed), under epoch + 1, as PENDING until the new node's agent runs it. Checks that
 * the VM is still where and as the caller saw it; with `silentBeforeMs` the old node's last report must
 * be older than that (twice its lease: a copy it may still hold is paused by its lease guard).
 *
 * Input:  KEYS[1] vm hash   KEYS[2] old node hash   KEYS[3] new node hash   KEYS[4] old node-vms zset
 *         KEYS[5] new node-vms zset   KEYS[6] old node-images hash   KEYS[7] new node-images hash
 *         KEYS[8] the group's anti-affinity hash (any key without a group)
 *         ARGV[1] { expectedNodeId, expectedEpoch, from: [state…], newNodeId, nowMs, staleAfterMs, silentBeforeMs }
 * Output: { 'OK', new epoch } or { outcome }: 'CHANGED' | 'NOT_SILENT' | 'NO_NODE' | 'CORDONED' | 'DRAINING'
 *   | 'NOT_READY' | 'NO_VCPUS' | 'NO_MEMORY' | 'ANTI_AFFINITY'
 */
export const MOVE_FOR_RESTART_LUA = `${LUA_HELPERS}
local a = cjson.decode(ARGV[1])
local v = redis.call('HMGET', KEYS[1], 'nodeId', 'state', 'fencingEpoch', 'vcpus', 'memoryMib', 'antiAffinityGroup', 'image')
if v[1] ~= a.expectedNodeId or tonumber(v[3] or '-1') ~= a.expectedEpoch or not has(a.from, v[2]) then return { 'CHANGED' } end
if a.silentBeforeMs > 0 and tonumber(redis.call('HGET', KEYS[2], 'lastReportMs') or '0') >= a.silentBeforeMs then return { 'NOT_SILENT' } end
local same = a.newNodeId == a.expectedNodeId
local vcpus, mem, group, image = tonumber(v[4] or '0'), tonumber(v[5] or '0'), v[6] or '', v[7] or ''
if redis.call('EXISTS', KEYS[3]) == 0 then return { 'NO_NODE' } end
if not same then
  local refusal = admissionRefusal(KEYS[3], KEYS[8], a.newNodeId, { vcpus = vcpus, memoryMib = mem, group = group }, a.nowMs, a.staleAfterMs)
  if refusal then return { refusal } end
  local k = { fromNode = KEYS[2], toNode = KEYS[3], fromVms = KEYS[4], toVms = KEYS[5], fromImages = KEYS[6], toImages = KEYS[7], group = KEYS[8] }
  moveVm(k, { id = redis.call('HGET', KEYS[1], 'vmId'), vcpus = vcpus, memoryMib = mem, group = group, image = image }, a.expectedNodeId, a.newNodeId, false)
end
local epoch = redis.call('HINCRBY', KEYS[1], 'fencingEpoch', 1)
redis.call('HSET', KEYS[1], 'nodeId', a.newNodeId, 'state', 'VM_STATE_PENDING', 'restartedAtMs', a.nowMs)
redis.call('HDEL', KEYS[1], 'missingSinceMs', 'failureReason', 'migrationId')
return { 'OK', epoch }
`;
