/**
 * Lua scripts of migration orchestration. Each changes the migration, its VM and the nodes'
 * allocations in one atomic step; node/aa/node-vms keys are rebuilt from the prefix (single Redis).
 * Every change publishes the migration's whole hash (HGETALL as a JSON array) on its events channel,
 * from inside the script, so that watchers see each step exactly as written.
 */

/**
 * Create a migration: the VM must be RUNNING on the source; the target must be registered, ready,
 * schedulable, have room within its ratios for the VM, and hold no VM of its anti-affinity group.
 * Reserves that room on the target (allocation and group membership) for the whole migration and
 * marks the VM MIGRATING.
 *
 * Input:
 *   KEYS[1] vm hash   KEYS[2] migration hash (new)   KEYS[3] migrations zset   KEYS[4] vm-migrations zset
 *   ARGV[1] migration id   ARGV[2] vm id   ARGV[3] target node id   ARGV[4] key prefix
 *   ARGV[5] now ms   ARGV[6] node stale after ms   ARGV[7..] migration hash field/value pairs
 * Output: 'OK' | 'NO_VM' | 'VM_MIGRATING' | 'VM_NOT_RUNNING' | 'SAME_NODE' | 'NO_NODE' | 'CORDONED'
 *   | 'DRAINING' | 'NOT_READY' | 'NO_VCPUS' | 'NO_MEMORY' | 'ANTI_AFFINITY'
 */
export const CREATE_MIGRATION_LUA = `
local vmKey = KEYS[1]
if redis.call('EXISTS', vmKey) == 0 then return 'NO_VM' end
local v = redis.call('HMGET', vmKey, 'state', 'nodeId', 'vcpus', 'memoryMib', 'antiAffinityGroup')
if v[1] == 'VM_STATE_MIGRATING' then return 'VM_MIGRATING' end
if v[1] ~= 'VM_STATE_RUNNING' then return 'VM_NOT_RUNNING' end
local target = ARGV[3]
if v[2] == target then return 'SAME_NODE' end
local prefix = ARGV[4]
local nodeKey = prefix .. 'node:' .. target
if redis.call('EXISTS', nodeKey) == 0 then return 'NO_NODE' end
local f = redis.call('HMGET', nodeKey, 'cordoned', 'draining', 'lastReportMs', 'vcpus', 'memoryMib',
  'cpuAllocationRatio', 'ramAllocationRatio', 'vcpusAllocated', 'memoryMibAllocated')
if f[2] == '1' then return 'DRAINING' end
if f[1] == '1' then return 'CORDONED' end
if tonumber(ARGV[5]) - tonumber(f[3] or '0') > tonumber(ARGV[6]) then return 'NOT_READY' end
local vcpus = tonumber(v[3] or '0')
local mem = tonumber(v[4] or '0')
if tonumber(f[8] or '0') + vcpus > math.floor(tonumber(f[4]) * tonumber(f[6]) + 1e-6) then return 'NO_VCPUS' end
if tonumber(f[9] or '0') + mem > math.floor(tonumber(f[5]) * tonumber(f[7]) + 1e-6) then return 'NO_MEMORY' end
local group = v[5] or ''
if group ~= '' and tonumber(redis.call('HGET', prefix .. 'aa:' .. group, target) or '0') > 0 then return 'ANTI_AFFINITY' end
redis.call('HINCRBY', nodeKey, 'vcpusAllocated', vcpus)
redis.call('HINCRBY', nodeKey, 'memoryMibAllocated', mem)
if group ~= '' then redis.call('HINCRBY', prefix .. 'aa:' .. group, target, 1) end
redis.call('HSET', vmKey, 'state', 'VM_STATE_MIGRATING', 'migrationId', ARGV[1])
local fields = {}
for i = 7, #ARGV do fields[#fields + 1] = ARGV[i] end
redis.call('HSET', KEYS[2], unpack(fields))
redis.call('HSET', KEYS[2], 'sourceNodeId', v[2], 'vcpus', vcpus, 'memoryMib', mem, 'antiAffinityGroup', group,
  'reserved', '1', 'rev', '1')
redis.call('ZADD', KEYS[3], 0, ARGV[1])
redis.call('ZADD', KEYS[4], 0, ARGV[1])
return 'OK'
`;

/**
 * Compare-and-set of the phase plus field updates, bumping `rev`. The phase is set only if the
 * current one is in the allowed list (from @vmm/migration/phase); fields are written only then.
 *
 * Input:  KEYS[1] migration hash   KEYS[2] events channel   ARGV[1] new phase
 *         ARGV[2] allowed current phases, comma-separated   ARGV[3..] field/value pairs
 * Output: 1 if applied, 0 if the migration is missing or in a phase not allowed
 */
export const ADVANCE_MIGRATION_LUA = `
local cur = redis.call('HGET', KEYS[1], 'phase')
if not cur then return 0 end
local ok = false
for p in string.gmatch(ARGV[2], '[^,]+') do if p == cur then ok = true end end
if not ok then return 0 end
redis.call('HSET', KEYS[1], 'phase', ARGV[1])
if #ARGV >= 3 then
  local fields = {}
  for i = 3, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('PUBLISH', KEYS[2], cjson.encode(redis.call('HGETALL', KEYS[1])))
return 1
`;

/**
 * The switch-over commit, the point of no return: STOP_AND_COPY → COMMITTING (from PRECOPY it
 * passes through STOP_AND_COPY in the same step, when the source's last messages came together) and, in the
 * same step, the VM moves to the target with a new fencing epoch; the source gives back its
 * allocation and group membership (the target's were reserved at creation).
 *
 * Input:  KEYS[1] migration hash   KEYS[2] vm hash   KEYS[3] events channel
 *         ARGV[1] key prefix   ARGV[2..] field/value pairs
 * Output: the new fencing epoch, or 0 if the migration is no longer committable (cancelled, failed)
 */
export const COMMIT_MIGRATION_LUA = `
local m = redis.call('HMGET', KEYS[1], 'phase', 'vmId', 'sourceNodeId', 'targetNodeId', 'vcpus', 'memoryMib',
  'antiAffinityGroup', 'migrationId')
if m[1] ~= 'MIGRATION_PHASE_STOP_AND_COPY' and m[1] ~= 'MIGRATION_PHASE_PRECOPY' then return 0 end
local v = redis.call('HMGET', KEYS[2], 'nodeId', 'migrationId')
if v[1] ~= m[3] or v[2] ~= m[8] then return 0 end
local prefix = ARGV[1]
local source, target, vmId = m[3], m[4], m[2]
local vcpus, mem, group = tonumber(m[5]), tonumber(m[6]), m[7] or ''
local sourceKey = prefix .. 'node:' .. source
if redis.call('EXISTS', sourceKey) == 1 then
  redis.call('HINCRBY', sourceKey, 'vcpusAllocated', -vcpus)
  redis.call('HINCRBY', sourceKey, 'memoryMibAllocated', -mem)
  redis.call('HINCRBY', sourceKey, 'vmCount', -1)
end
redis.call('HINCRBY', prefix .. 'node:' .. target, 'vmCount', 1)
if group ~= '' then
  local aaKey = prefix .. 'aa:' .. group
  if redis.call('HINCRBY', aaKey, source, -1) <= 0 then redis.call('HDEL', aaKey, source) end
end
redis.call('ZREM', prefix .. 'node-vms:' .. source, vmId)
redis.call('ZADD', prefix .. 'node-vms:' .. target, 0, vmId)
local image = redis.call('HGET', KEYS[2], 'image') or ''
if image ~= '' then
  local sourceImages = prefix .. 'node-images:' .. source
  if redis.call('HINCRBY', sourceImages, image, -1) <= 0 then redis.call('HDEL', sourceImages, image) end
  redis.call('HINCRBY', prefix .. 'node-images:' .. target, image, 1)
end
local epoch = redis.call('HINCRBY', KEYS[2], 'fencingEpoch', 1)
redis.call('HSET', KEYS[2], 'nodeId', target)
redis.call('HSET', KEYS[1], 'phase', 'MIGRATION_PHASE_COMMITTING', 'committed', '1', 'reserved', '0', 'fencingEpoch', epoch)
if #ARGV >= 2 then
  local fields = {}
  for i = 2, #ARGV do fields[#fields + 1] = ARGV[i] end
  redis.call('HSET', KEYS[1], unpack(fields))
end
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('PUBLISH', KEYS[3], cjson.encode(redis.call('HGETALL', KEYS[1])))
return epoch
`;

/**
 * End a migration that did not commit: give back the target's reserved room and group
 * membership (once), put the VM back to RUNNING on the source, and set the final phase unless the
 * migration is already final (a cancel set CANCELLED first).
 *
 * Input:  KEYS[1] migration hash   KEYS[2] vm hash   KEYS[3] events channel
 *         ARGV[1] key prefix   ARGV[2] final phase
 *         ARGV[3] error text   ARGV[4] finished at ms
 * Output: 1 if the room was given back now, 0 if it had been already (or the migration committed)
 */
export const ROLLBACK_MIGRATION_LUA = `
local m = redis.call('HMGET', KEYS[1], 'phase', 'reserved', 'committed', 'targetNodeId', 'vcpus', 'memoryMib',
  'antiAffinityGroup', 'migrationId')
if not m[1] or m[3] == '1' then return 0 end
local final = { MIGRATION_PHASE_COMPLETED = true, MIGRATION_PHASE_FAILED = true, MIGRATION_PHASE_CANCELLED = true }
if not final[m[1]] then
  redis.call('HSET', KEYS[1], 'phase', ARGV[2], 'error', ARGV[3])
end
local finished = redis.call('HGET', KEYS[1], 'finishedAtMs')
if not finished or finished == '0' then redis.call('HSET', KEYS[1], 'finishedAtMs', ARGV[4]) end
local v = redis.call('HMGET', KEYS[2], 'state', 'migrationId')
if v[1] == 'VM_STATE_MIGRATING' and v[2] == m[8] then
  redis.call('HSET', KEYS[2], 'state', 'VM_STATE_RUNNING')
  redis.call('HDEL', KEYS[2], 'migrationId')
end
redis.call('HINCRBY', KEYS[1], 'rev', 1)
redis.call('PUBLISH', KEYS[3], cjson.encode(redis.call('HGETALL', KEYS[1])))
if m[2] ~= '1' then return 0 end
local prefix = ARGV[1]
local targetKey = prefix .. 'node:' .. m[4]
if redis.call('EXISTS', targetKey) == 1 then
  redis.call('HINCRBY', targetKey, 'vcpusAllocated', -tonumber(m[5]))
  redis.call('HINCRBY', targetKey, 'memoryMibAllocated', -tonumber(m[6]))
end
local group = m[7] or ''
if group ~= '' then
  local aaKey = prefix .. 'aa:' .. group
  if redis.call('HINCRBY', aaKey, m[4], -1) <= 0 then redis.call('HDEL', aaKey, m[4]) end
end
redis.call('HSET', KEYS[1], 'reserved', '0')
return 1
`;

/**
 * Take an in-flight slot: at most ARGV[2] migrations in the cluster, ARGV[3] outbound from the
 * source and ARGV[4] inbound to the target. Idempotent for a migration that holds its slot.
 *
 * Input:  KEYS[1] active set   KEYS[2] source's outbound set   KEYS[3] target's inbound set
 *         ARGV[1] migration id   ARGV[2] cluster limit   ARGV[3] outbound limit   ARGV[4] inbound limit
 * Output: 'OK' | 'CLUSTER' | 'OUTBOUND' | 'INBOUND'
 */
export const ACQUIRE_SLOT_LUA = `
local id = ARGV[1]
if redis.call('SISMEMBER', KEYS[1], id) == 1 then return 'OK' end
if redis.call('SCARD', KEYS[1]) >= tonumber(ARGV[2]) then return 'CLUSTER' end
if redis.call('SCARD', KEYS[2]) >= tonumber(ARGV[3]) then return 'OUTBOUND' end
if redis.call('SCARD', KEYS[3]) >= tonumber(ARGV[4]) then return 'INBOUND' end
redis.call('SADD', KEYS[1], id)
redis.call('SADD', KEYS[2], id)
redis.call('SADD', KEYS[3], id)
return 'OK'
`;
