/** Lua scripts for node records: updates that must not resurrect a node (or VM) that is gone. */

/**
 * Apply one agent report: the node's last report time and memory/KSM figures, and each known VM's
 * measured fields. VMs placed on another node (a stale copy) or unknown are skipped. A VM's state is
 * taken from the report unless the controller owns it right now (PENDING while created, MIGRATING).
 * Stale copies are returned: VMs placed on another node whose fencing epoch is above the reported one.
 *
 * Input:
 *   KEYS[1] node hash   KEYS[2..n+1] vm hashes, in report order
 *   ARGV[1] node id   ARGV[2] now ms   ARGV[3] memory used bytes   ARGV[4] ksm stats JSON
 *   ARGV[5] ksm knobs JSON ('' = keep)   ARGV[6] rss bytes
 *   then for each vm, 6 values from ARGV[7]: vm id, state, dirty rate pages/s, working set pages,
 *   resident pages, reported fencing epoch
 * Output: { wasNotReady (1 if the node had been recorded NOT_READY, else 0; -1 if the node is unknown),
 *   vms updated, { vm id, current fencing epoch, current state, … } of the stale copies }
 */
export const APPLY_REPORT_LUA = `
local nodeKey = KEYS[1]
if redis.call('EXISTS', nodeKey) == 0 then return { -1, 0, {} } end
local wasNotReady = 0
if redis.call('HGET', nodeKey, 'readyRecorded') == '0' then wasNotReady = 1 end
redis.call('HSET', nodeKey, 'lastReportMs', ARGV[2], 'readyRecorded', '1', 'memoryUsedBytes', ARGV[3],
  'ksm', ARGV[4], 'rssBytes', ARGV[6])
if ARGV[5] ~= '' then redis.call('HSET', nodeKey, 'ksmKnobs', ARGV[5]) end
local updatable = { VM_STATE_RUNNING = true, VM_STATE_PAUSED = true, VM_STATE_STOPPED = true, VM_STATE_FAILED = true }
local updated = 0
local stale = {}
for i = 2, #KEYS do
  local base = 7 + (i - 2) * 6
  local vmKey = KEYS[i]
  local f = redis.call('HMGET', vmKey, 'nodeId', 'state', 'fencingEpoch')
  if f[1] == ARGV[1] then
    redis.call('HSET', vmKey, 'dirtyRatePagesPerSec', ARGV[base + 2], 'workingSetPages', ARGV[base + 3],
      'residentPages', ARGV[base + 4])
    if updatable[f[2]] and updatable[ARGV[base + 1]] then redis.call('HSET', vmKey, 'state', ARGV[base + 1]) end
    updated = updated + 1
  elseif f[1] and tonumber(ARGV[base + 5]) < tonumber(f[3] or '0') then
    stale[#stale + 1] = ARGV[base]
    stale[#stale + 1] = f[3]
    stale[#stale + 1] = f[2] or ''
  end
end
return { wasNotReady, updated, stale }
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
