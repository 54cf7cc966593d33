/** Lua scripts for node records: updates that must not resurrect a node (or VM) that is gone. */

/**
 * Apply one agent report: the node's last report time, memory/KSM figures and what it reported holding
 * (Node.reported_vms), and each VM's measured fields where the node holds the VM at the epoch the
 * controller does. A VM's state is taken from the report unless the controller owns it right now
 * (PENDING while created, MIGRATING) or the copy is a migration's source. VMs the controller places
 * on this node that the report does not list (RUNNING or PAUSED ones) are marked missing since now;
 * those missing for longer than the grace are returned.
 *
 * Input:
 *   KEYS[1] node hash   KEYS[2..n+1] vm hashes, in the order of `vms`   KEYS[n+2..] vm hashes, in the
 *   order of `placed` (the VMs the node-vms index placed on the node when the report was read)
 *   ARGV[1] { nodeId, nowMs, memoryUsedBytes, ksm (JSON), ksmKnobs (JSON, '' = keep), reportedVms (JSON),
 *             missingGraceMs, vms: [{ vmId, state, fencingEpoch, outgoing,
 *             measured: { field: number } (VM_MEASURED_FIELDS) }], placed: [vm id…] }
 * Output: { wasNotReady (1 if the node had been recorded NOT_READY, else 0; -1 if the node is unknown),
 *   { vm id, … } of VMs missing past the grace }
 */
export const APPLY_REPORT_LUA = `
local a = cjson.decode(ARGV[1])
local nodeKey = KEYS[1]
if redis.call('EXISTS', nodeKey) == 0 then return { -1, {} } end
local wasNotReady = 0
if redis.call('HGET', nodeKey, 'readyRecorded') == '0' then wasNotReady = 1 end
redis.call('HSET', nodeKey, 'lastReportMs', a.nowMs, 'readyRecorded', '1', 'memoryUsedBytes', a.memoryUsedBytes,
  'ksm', a.ksm, 'reportedVms', a.reportedVms)
if a.ksmKnobs ~= '' then redis.call('HSET', nodeKey, 'ksmKnobs', a.ksmKnobs) end
local updatable = { VM_STATE_RUNNING = true, VM_STATE_PAUSED = true, VM_STATE_STOPPED = true, VM_STATE_FAILED = true }
local reported = {}
for i, vm in ipairs(a.vms) do
  reported[vm.vmId] = true
  local vmKey = KEYS[i + 1]
  local f = redis.call('HMGET', vmKey, 'nodeId', 'state', 'fencingEpoch')
  if f[1] == a.nodeId and tonumber(f[3] or '0') == vm.fencingEpoch then
    local measured = {}
    for field, value in pairs(vm.measured) do
      measured[#measured + 1] = field
      measured[#measured + 1] = value
    end
    if #measured > 0 then redis.call('HSET', vmKey, unpack(measured)) end
    if not vm.outgoing and updatable[f[2]] and updatable[vm.state] then redis.call('HSET', vmKey, 'state', vm.state) end
    redis.call('HDEL', vmKey, 'missingSinceMs')
  end
end
local expected = { VM_STATE_RUNNING = true, VM_STATE_PAUSED = true }
local missing = {}
for j, vmId in ipairs(a.placed) do
  if not reported[vmId] then
    local vmKey = KEYS[#a.vms + 1 + j]
    local f = redis.call('HMGET', vmKey, 'state', 'missingSinceMs', 'nodeId')
    if expected[f[1]] and f[3] == a.nodeId then
      if not f[2] then redis.call('HSET', vmKey, 'missingSinceMs', a.nowMs)
      elseif a.nowMs - tonumber(f[2]) >= a.missingGraceMs then missing[#missing + 1] = vmId end
    end
  end
end
return { wasNotReady, missing }
`;

/**
 * Set fields of an existing hash (node or VM); never creates it.
 *
 * Input:  KEYS[1] hash   ARGV field/value pairs
 * Output: 1 if set, 0 if the hash does not exist
 */
export const SET_IF_EXISTS_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
`;

/**
 * Replace a node's labels (LabelNode), only if they are still what the caller read and merged: a
 * compare-and-set, so that two LabelNode calls never lose each other's keys. Registrations never
 * write `labels`, so the labels outlive agent restarts.
 *
 * Input:  KEYS[1] node hash   ARGV[1] the `labels` field as read ('' when unset)   ARGV[2] the new labels (JSON)
 * Output: 1 if written, 0 if the labels changed meanwhile (read again), -1 if there is no such node
 */
export const REPLACE_LABELS_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then return -1 end
if (redis.call('HGET', KEYS[1], 'labels') or '') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'labels', ARGV[2])
return 1
`;

/**
 * Record a readiness transition seen by the sweep, only if the node's last report is still as old
 * as the sweep saw it (a report that arrived meanwhile wins).
 *
 * Input:  KEYS[1] node hash   ARGV[1] '0' or '1'   ARGV[2] lastReportMs the sweep saw
 * Output: 1 if recorded, 0 otherwise
 */
export const RECORD_READINESS_LUA = `
local f = redis.call('HMGET', KEYS[1], 'lastReportMs', 'readyRecorded')
if not f[1] or f[1] ~= ARGV[2] or f[2] == ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'readyRecorded', ARGV[1])
return 1
`;

/**
 * Create or refresh a node at registration: its registered fields set, its cordon flags and allocation
 * counters kept (zero for a new node), its id indexed. A script rather than MULTI, so that the change
 * goes through the journal like every record write.
 *
 * Input:  KEYS[1] node hash   KEYS[2] nodes zset   ARGV[1] { nodeId, fields: { node hash } }
 * Output: 1
 */
export const REGISTER_NODE_LUA = `
local a = cjson.decode(ARGV[1])
local flat = {}
for k, v in pairs(a.fields) do flat[#flat + 1] = k; flat[#flat + 1] = v end
redis.call('HSET', KEYS[1], unpack(flat))
for _, field in ipairs({ 'vcpusAllocated', 'memoryMibAllocated', 'vmCount', 'cordoned', 'draining' }) do
  redis.call('HSETNX', KEYS[1], field, '0')
end
redis.call('ZADD', KEYS[2], 0, a.nodeId)
return 1
`;
