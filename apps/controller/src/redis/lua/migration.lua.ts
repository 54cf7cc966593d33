/**
 * Lua scripts of migration orchestration. Each changes the migration, its VM and the nodes'
 * allocations in one atomic step. Every key a script touches arrives in KEYS (built by redis-keys.ts);
 * arguments arrive as one JSON object in ARGV[1] (named fields, decoded with cjson), and the phase
 * lists they check against come from @vmm/migration/phase (nothing here spells a phase set). Every
 * change bumps `rev`, appends to `transitions` ("PHASE@ms;" per phase entered), and publishes the
 * migration's whole hash (HGETALL as a JSON array) on its events channel.
 */

import { LUA_HELPERS } from './shared.lua.js';

/** Shared helpers, prepended to each script below. */
const PRELUDE = `${LUA_HELPERS}
local a = cjson.decode(ARGV[1])
local function setFields(key, fields)
  if fields == nil then return end
  local flat = {}
  for k, v in pairs(fields) do flat[#flat + 1] = k; flat[#flat + 1] = tostring(v) end
  if #flat > 0 then redis.call('HSET', key, unpack(flat)) end
end
local function enter(migKey, phase, nowMs)
  redis.call('HSET', migKey, 'phase', phase)
  redis.call('HSET', migKey, 'transitions', (redis.call('HGET', migKey, 'transitions') or '') .. phase .. '@' .. nowMs .. ';')
end
local function changed(migKey, channel)
  redis.call('HINCRBY', migKey, 'rev', 1)
  redis.call('PUBLISH', channel, cjson.encode(redis.call('HGETALL', migKey)))
end
-- KEYS[4..10] of the commit and the revert: the source and target node, their indexes, the group.
local function moveKeys(fromSource)
  local src = { node = KEYS[4], vms = KEYS[6], images = KEYS[8] }
  local dst = { node = KEYS[5], vms = KEYS[7], images = KEYS[9] }
  local from, to = dst, src
  if fromSource then from, to = src, dst end
  return { fromNode = from.node, toNode = to.node, fromVms = from.vms, toVms = to.vms,
    fromImages = from.images, toImages = to.images, group = KEYS[10] }
end
`;

/**
 * Create a migration: the VM must be RUNNING on the source; the target must be registered, ready,
 * schedulable, have room within its ratios for the VM, and hold no VM of its anti-affinity group.
 * Reserves that room on the target (allocation and group membership) for the whole migration, marks
 * the VM MIGRATING and the migration open.
 *
 * Input:
 *   KEYS[1] vm hash   KEYS[2] migration hash (new)   KEYS[3] migrations zset   KEYS[4] vm-migrations zset
 *   KEYS[5] target node hash   KEYS[6] the group's anti-affinity hash (any key when the VM has no group)
 *   KEYS[7] open migrations set   KEYS[8] events channel
 *   ARGV[1] { migrationId, targetNodeId, nowMs, staleAfterMs, phase, fields }
 * Output: 'OK' | 'NO_VM' | 'VM_MIGRATING' | 'VM_NOT_RUNNING' | 'SAME_NODE' | 'NO_NODE' | 'CORDONED'
 *   | 'DRAINING' | 'NOT_READY' | 'NO_VCPUS' | 'NO_MEMORY' | 'ANTI_AFFINITY'
 */
export const CREATE_MIGRATION_LUA = `${PRELUDE}
local vmKey, migKey, nodeKey, aaKey = KEYS[1], KEYS[2], KEYS[5], KEYS[6]
if redis.call('EXISTS', vmKey) == 0 then return 'NO_VM' end
local v = redis.call('HMGET', vmKey, 'state', 'nodeId', 'vcpus', 'memoryMib', 'antiAffinityGroup', 'fencingEpoch')
if v[1] == 'VM_STATE_MIGRATING' then return 'VM_MIGRATING' end
if v[1] ~= 'VM_STATE_RUNNING' then return 'VM_NOT_RUNNING' end
local target = a.targetNodeId
if v[2] == target then return 'SAME_NODE' end
if redis.call('EXISTS', nodeKey) == 0 then return 'NO_NODE' end
local vcpus = tonumber(v[3] or '0')
local mem = tonumber(v[4] or '0')
local group = v[5] or ''
local refusal = admissionRefusal(nodeKey, aaKey, target, { vcpus = vcpus, memoryMib = mem, group = group }, a.nowMs, a.staleAfterMs)
if refusal then return refusal end
add(nodeKey, 'vcpusAllocated', vcpus)
add(nodeKey, 'memoryMibAllocated', mem)
if group ~= '' then redis.call('HINCRBY', aaKey, target, 1) end
redis.call('HSET', vmKey, 'state', 'VM_STATE_MIGRATING', 'migrationId', a.migrationId)
setFields(migKey, a.fields)
redis.call('HSET', migKey, 'sourceNodeId', v[2], 'vcpus', vcpus, 'memoryMib', mem, 'antiAffinityGroup', group,
  'reserved', '1', 'sourceEpoch', v[6] or '1', 'rev', '0')
enter(migKey, a.phase, a.nowMs)
redis.call('ZADD', KEYS[3], 0, a.migrationId)
redis.call('ZADD', KEYS[4], 0, a.migrationId)
redis.call('SADD', KEYS[7], a.migrationId)
changed(migKey, KEYS[8])
return 'OK'
`;

/**
 * Compare-and-set of the phase plus field updates. The phase is set only if the current one is in
 * `from`; fields are written only then. A final `to` closes the migration (open set).
 *
 * Input:  KEYS[1] migration hash   KEYS[2] events channel   KEYS[3] open migrations set
 *         ARGV[1] { to, from: [phase…], fields, final, nowMs }
 * Output: 1 if applied, 0 if the migration is missing or in a phase not in `from`
 */
export const ADVANCE_MIGRATION_LUA = `${PRELUDE}
local cur = redis.call('HGET', KEYS[1], 'phase')
if not cur or not has(a.from, cur) then return 0 end
if cur ~= a.to then enter(KEYS[1], a.to, a.nowMs) end
setFields(KEYS[1], a.fields)
if a.final then
  redis.call('SREM', KEYS[3], redis.call('HGET', KEYS[1], 'migrationId'))
end
changed(KEYS[1], KEYS[2])
return 1
`;

/**
 * The switch-over commit, the point of no return. From a phase with a path to COMMITTING (`paths`:
 * PRECOPY passes through STOP_AND_COPY in the same step when the source's last messages came
 * together), and in the same step the VM moves to the target under a new fencing epoch; the source
 * gives back its allocation and group membership (the target's were reserved at creation).
 * Idempotent: a migration already committed answers its epoch again.
 *
 * Input:  KEYS[1] migration hash   KEYS[2] vm hash   KEYS[3] events channel
 *         KEYS[4] source node hash   KEYS[5] target node hash   KEYS[6] source node-vms zset
 *         KEYS[7] target node-vms zset   KEYS[8] source node-images hash   KEYS[9] target node-images hash
 *         KEYS[10] the group's anti-affinity hash (any key without a group)
 *         ARGV[1] { paths: { phase: [phase…] }, committed: [phase…], fields, nowMs }
 * Output: the fencing epoch the VM holds on the target, or 0 if the migration is not committable
 */
export const COMMIT_MIGRATION_LUA = `${PRELUDE}
local migKey, vmKey = KEYS[1], KEYS[2]
local m = redis.call('HMGET', migKey, 'phase', 'vmId', 'sourceNodeId', 'targetNodeId', 'vcpus', 'memoryMib',
  'antiAffinityGroup', 'migrationId', 'fencingEpoch')
if not m[1] then return 0 end
if has(a.committed, m[1]) then return tonumber(m[9] or '0') end
local path = a.paths[m[1]]
if path == nil then return 0 end
local v = redis.call('HMGET', vmKey, 'nodeId', 'migrationId', 'image')
if v[1] ~= m[3] or v[2] ~= m[8] then return 0 end
local vm = { id = m[2], vcpus = tonumber(m[5]), memoryMib = tonumber(m[6]), group = m[7] or '', image = v[3] or '' }
moveVm(moveKeys(true), vm, m[3], m[4], true)
local epoch = redis.call('HINCRBY', vmKey, 'fencingEpoch', 1)
redis.call('HSET', vmKey, 'nodeId', m[4])
redis.call('HDEL', vmKey, 'missingSinceMs')
for _, phase in ipairs(path) do enter(migKey, phase, a.nowMs) end
redis.call('HSET', migKey, 'reserved', '0', 'fencingEpoch', epoch, 'committedAtMs', a.nowMs)
setFields(migKey, a.fields)
changed(migKey, KEYS[3])
return epoch
`;

/**
 * The target resumed the VM (its CommitIncoming answered, or it reported the VM running at the
 * committed epoch): from now on the commit can no longer be reverted. Idempotent. KEYS[2] is unused
 * (kept so that every migration script takes the events channel at the same place).
 *
 * Input:  KEYS[1] migration hash   KEYS[2] events channel
 *         ARGV[1] { committing, fencingEpoch, resumedAtMs }
 * Output: 1 when the migration is (now) marked resumed, 0 when it is not COMMITTING at that epoch (reverted)
 */
export const MARK_TARGET_RESUMED_LUA = `${PRELUDE}
local m = redis.call('HMGET', KEYS[1], 'phase', 'fencingEpoch', 'targetResumedAtMs')
if m[1] ~= a.committing or tonumber(m[2] or '0') ~= a.fencingEpoch then
  if m[3] and m[3] ~= '0' then return 1 end
  return 0
end
if m[3] and m[3] ~= '0' then return 1 end
-- Not a change watchers see (no field of cluster.v1.Migration): no rev, no event.
redis.call('HSET', KEYS[1], 'targetResumedAtMs', a.resumedAtMs)
return 1
`;

/**
 * After the target resumed: COMMITTING → COMPLETED, the VM RUNNING on the target again (it stays on
 * the target either way), the migration closed.
 *
 * Input:  KEYS[1] migration hash   KEYS[2] vm hash   KEYS[3] events channel   KEYS[4] open migrations set
 *         ARGV[1] { from: [phase…], to, fields, nowMs }
 * Output: 1 if completed now, 0 if it was not in `from` (already completed, or reverted)
 */
export const FINISH_MIGRATION_LUA = `${PRELUDE}
local m = redis.call('HMGET', KEYS[1], 'phase', 'migrationId', 'targetResumedAtMs')
if not m[1] or not has(a.from, m[1]) then return 0 end
if not m[3] or m[3] == '0' then return 0 end
if redis.call('HGET', KEYS[2], 'migrationId') == m[2] then
  redis.call('HSET', KEYS[2], 'state', 'VM_STATE_RUNNING')
  redis.call('HDEL', KEYS[2], 'migrationId')
end
enter(KEYS[1], a.to, a.nowMs)
setFields(KEYS[1], a.fields)
redis.call('SREM', KEYS[4], m[2])
changed(KEYS[1], KEYS[3])
return 1
`;

/**
 * End a migration that did not commit: from one of `from` (the phases that may still roll back) to
 * the final `phase`, give back the target's reserved room and group membership, put the VM back to
 * RUNNING on the source, close the migration. One atomic step, so that nothing can commit after it.
 *
 * Input:  KEYS[1] migration hash   KEYS[2] vm hash   KEYS[3] events channel   KEYS[4] target node hash
 *         KEYS[5] the group's anti-affinity hash (any key without a group)   KEYS[6] open migrations set
 *         ARGV[1] { phase, from: [phase…], error, errorReason, nowMs }
 * Output: 1 if rolled back now, 0 if the migration is missing or not in `from` (final or committed)
 */
export const ROLLBACK_MIGRATION_LUA = `${PRELUDE}
local migKey = KEYS[1]
local m = redis.call('HMGET', migKey, 'phase', 'reserved', 'targetNodeId', 'vcpus', 'memoryMib', 'antiAffinityGroup', 'migrationId')
if not m[1] or not has(a.from, m[1]) then return 0 end
enter(migKey, a.phase, a.nowMs)
redis.call('HSET', migKey, 'error', a.error, 'errorReason', a.errorReason, 'finishedAtMs', a.nowMs)
local v = redis.call('HMGET', KEYS[2], 'state', 'migrationId')
if v[2] == m[7] then
  if v[1] == 'VM_STATE_MIGRATING' then redis.call('HSET', KEYS[2], 'state', 'VM_STATE_RUNNING') end
  redis.call('HDEL', KEYS[2], 'migrationId')
end
if m[2] == '1' then
  if redis.call('EXISTS', KEYS[4]) == 1 then
    add(KEYS[4], 'vcpusAllocated', -tonumber(m[4]))
    add(KEYS[4], 'memoryMibAllocated', -tonumber(m[5]))
  end
  if (m[6] or '') ~= '' then decrField(KEYS[5], m[3]) end
  redis.call('HSET', migKey, 'reserved', '0')
end
redis.call('SREM', KEYS[6], m[7])
changed(migKey, KEYS[3])
return 1
`;

/**
 * Revert a commit whose target lost its copy before it resumed it: the VM goes back to the source
 * under a newer epoch (the source's verified paused copy runs on), with its allocation, group
 * membership and indexes; the target gives back what the commit gave it. Refused once the target
 * resumed (targetResumedAtMs), and, when `silentBeforeMs` is set, unless the target's last report is
 * older than it (the target's lease has run out, so a copy it may have resumed is paused by now).
 *
 * Input:  KEYS[1] migration hash   KEYS[2] vm hash   KEYS[3] events channel
 *         KEYS[4] source node hash   KEYS[5] target node hash   KEYS[6] source node-vms zset
 *         KEYS[7] target node-vms zset   KEYS[8] source node-images hash   KEYS[9] target node-images hash
 *         KEYS[10] the group's anti-affinity hash (any key without a group)   KEYS[11] open migrations set
 *         ARGV[1] { committing, phase, error, errorReason, nowMs, silentBeforeMs (0 = no check) }
 * Output: the VM's new epoch, or 0 if not reverted
 */
export const REVERT_COMMIT_LUA = `${PRELUDE}
local migKey, vmKey = KEYS[1], KEYS[2]
local m = redis.call('HMGET', migKey, 'phase', 'vmId', 'sourceNodeId', 'targetNodeId', 'vcpus', 'memoryMib',
  'antiAffinityGroup', 'migrationId', 'fencingEpoch', 'targetResumedAtMs')
if m[1] ~= a.committing then return 0 end
if m[10] and m[10] ~= '0' then return 0 end
local v = redis.call('HMGET', vmKey, 'nodeId', 'migrationId', 'fencingEpoch', 'image')
if v[1] ~= m[4] or v[2] ~= m[8] or v[3] ~= m[9] then return 0 end
if a.silentBeforeMs > 0 and tonumber(redis.call('HGET', KEYS[5], 'lastReportMs') or '0') >= a.silentBeforeMs then return 0 end
local vm = { id = m[2], vcpus = tonumber(m[5]), memoryMib = tonumber(m[6]), group = m[7] or '', image = v[4] or '' }
moveVm(moveKeys(false), vm, m[4], m[3], false)
local epoch = redis.call('HINCRBY', vmKey, 'fencingEpoch', 1)
redis.call('HSET', vmKey, 'nodeId', m[3], 'state', 'VM_STATE_RUNNING')
redis.call('HDEL', vmKey, 'migrationId', 'missingSinceMs')
enter(migKey, a.phase, a.nowMs)
redis.call('HSET', migKey, 'error', a.error, 'errorReason', a.errorReason, 'finishedAtMs', a.nowMs,
  'revertedAtMs', a.nowMs, 'revertedEpoch', epoch)
redis.call('SREM', KEYS[11], m[8])
changed(migKey, KEYS[3])
return epoch
`;

/**
 * Take an in-flight slot: at most `cluster` migrations in the cluster, `outbound` from the source
 * and `inbound` to the target. Idempotent for a migration that holds its slot.
 *
 * Input:  KEYS[1] active set   KEYS[2] source's outbound set   KEYS[3] target's inbound set
 *         ARGV[1] { migrationId, cluster, outbound, inbound }
 * Output: 'OK' | 'CLUSTER' | 'OUTBOUND' | 'INBOUND'
 */
export const ACQUIRE_SLOT_LUA = `${PRELUDE}
local id = a.migrationId
if redis.call('SISMEMBER', KEYS[1], id) == 1 then return 'OK' end
if redis.call('SCARD', KEYS[1]) >= a.cluster then return 'CLUSTER' end
if redis.call('SCARD', KEYS[2]) >= a.outbound then return 'OUTBOUND' end
if redis.call('SCARD', KEYS[3]) >= a.inbound then return 'INBOUND' end
redis.call('SADD', KEYS[1], id)
redis.call('SADD', KEYS[2], id)
redis.call('SADD', KEYS[3], id)
return 'OK'
`;
