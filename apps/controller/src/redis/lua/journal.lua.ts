/**
 * The change journal every write of a VM, node or migration record goes through (RecordScript wraps
 * each record script in it), for WatchEvents and the lists' `revision`.
 *
 * The wrapper runs the script as a function body with `redis.call` intercepted: before the first write
 * of a record hash (`<prefix>:vm:<id>`, `<prefix>:node:<id>`, `<prefix>:mig:<id>`) it keeps the hash
 * as it was; after the script it compares each such hash with what it became and, for each that
 * changed as clients see it, in the same atomic step bumps the cluster-wide revision (INCR) and
 * appends (kind, id, type, revision) to the changes stream under the stream id `<revision>-0`, so
 * that revisions are contiguous and the stream is the history (trimmed by the controller's poller).
 * A DELETED entry carries the record as it was last (`last`, HGETALL as a JSON array); the others are
 * read whole when they are sent.
 *
 * Fields are compared by the rules of JOURNAL_FIELD_RULES: 'hidden' fields never make a change on their
 * own (bookkeeping, or a report's heartbeat); 'coalesced' ones (figures a report measures every
 * second) make a MODIFIED at most once per `coalesceMs` per record (the last emission's time is kept
 * in the `ev-last` hash), so that node reports do not flood the history.
 *
 * Input:  KEYS[..n-4] the script's own keys   KEYS[n-3] revision counter   KEYS[n-2] changes stream
 *         KEYS[n-1] ev-last hash (record key → ms of its last event)   KEYS[n] the history's cap
 *         (a number the controller sets at start; DEFAULT_HISTORY without it); the wrapper removes
 *         these four from KEYS before the script runs, so the script sees its own keys only.
 * Output: the script's own.
 */
import { VM_MEASURED_FIELDS } from '../../common/model.js';

/** A MODIFIED made of coalesced fields only comes at most this often per record (ms). */
export const COALESCE_MS = 10_000;

/** The history's cap when the controller has not set one (WATCH_HISTORY's default). */
export const DEFAULT_HISTORY = 10_000;

export type FieldRule = 'hidden' | 'coalesced';

/** Per record kind (the stream's `kind`), the fields that do not count as a change by themselves. */
export const JOURNAL_FIELD_RULES: Record<'vm' | 'node' | 'migration', Record<string, FieldRule>> = {
  vm: { missingSinceMs: 'hidden', ...Object.fromEntries(VM_MEASURED_FIELDS.map((f) => [f, 'coalesced' as const])) },
  node: { lastReportMs: 'hidden', memoryUsedBytes: 'coalesced', ksm: 'coalesced' },
  migration: { rev: 'hidden', targetResumedAtMs: 'hidden' },
};

const luaTable = (rules: Record<string, FieldRule>) =>
  `{ ${Object.entries(rules).map(([field, rule]) => `[${JSON.stringify(field)}] = '${rule}'`).join(', ')} }`;

const JOURNAL_HEAD = `
local __real = redis
local __n = #KEYS
local __revKey, __logKey, __lastKey, __capKey = KEYS[__n - 3], KEYS[__n - 2], KEYS[__n - 1], KEYS[__n]
KEYS[__n] = nil; KEYS[__n - 1] = nil; KEYS[__n - 2] = nil; KEYS[__n - 3] = nil
local __p = string.sub(__revKey, 1, #__revKey - 3)
local __writes = { HSET = true, HMSET = true, HSETNX = true, HINCRBY = true, HINCRBYFLOAT = true, HDEL = true, DEL = true, UNLINK = true }
local __kinds = { vm = 'vm', node = 'node', mig = 'migration' }
local __seen, __order = {}, {}
local function __before(key)
  if key == nil or __seen[key] ~= nil then return end
  __seen[key] = false
  if string.sub(key, 1, #__p) ~= __p then return end
  local kind, id = string.match(string.sub(key, #__p + 1), '^(%a+):(.+)$')
  if not kind or not __kinds[kind] then return end
  __seen[key] = { kind = __kinds[kind], id = id, before = __real.call('HGETALL', key) }
  __order[#__order + 1] = key
end
local redis = setmetatable({
  call = function(cmd, ...)
    local c = string.upper(cmd)
    if __writes[c] then
      if c == 'DEL' or c == 'UNLINK' then
        for _, k in ipairs({ ... }) do __before(k) end
      else
        __before((...))
      end
    end
    return __real.call(cmd, ...)
  end,
}, { __index = __real })
local function __body()
`;

const JOURNAL_TAIL = `
end
local __result = __body()
local __rules = { vm = ${luaTable(JOURNAL_FIELD_RULES.vm)}, node = ${luaTable(JOURNAL_FIELD_RULES.node)},
  migration = ${luaTable(JOURNAL_FIELD_RULES.migration)} }
local function __map(flat)
  local m = {}
  for i = 1, #flat, 2 do m[flat[i]] = flat[i + 1] end
  return m
end
if #__order > 0 then
  local __t = __real.call('TIME')
  local __nowMs = tonumber(__t[1]) * 1000 + math.floor(tonumber(__t[2]) / 1000)
  local __cap = tonumber(__real.call('GET', __capKey) or '${DEFAULT_HISTORY}')
  for _, key in ipairs(__order) do
    local s = __seen[key]
    local after = __real.call('HGETALL', key)
    local typ = nil
    if #s.before == 0 and #after > 0 then typ = 'ADDED'
    elseif #s.before > 0 and #after == 0 then typ = 'DELETED'
    elseif #after > 0 then
      local b, x, rules = __map(s.before), __map(after), __rules[s.kind]
      local visible, coalesced = false, false
      local function note(field)
        local rule = rules[field]
        if rule == nil then visible = true elseif rule == 'coalesced' then coalesced = true end
      end
      for f, v in pairs(x) do if b[f] ~= v then note(f) end end
      for f, _ in pairs(b) do if x[f] == nil then note(f) end end
      if visible then typ = 'MODIFIED'
      elseif coalesced and __nowMs - tonumber(__real.call('HGET', __lastKey, key) or '0') >= ${COALESCE_MS} then typ = 'MODIFIED' end
    end
    if typ then
      local rev = __real.call('INCR', __revKey)
      if typ == 'DELETED' then
        __real.call('XADD', __logKey, 'MAXLEN', __cap, rev .. '-0', 'kind', s.kind, 'id', s.id, 'type', typ, 'last', cjson.encode(s.before))
        __real.call('HDEL', __lastKey, key)
      else
        __real.call('XADD', __logKey, 'MAXLEN', __cap, rev .. '-0', 'kind', s.kind, 'id', s.id, 'type', typ)
        __real.call('HSET', __lastKey, key, __nowMs)
      end
    end
  end
end
return __result
`;

/** A record script's source inside the journal (see the header). */
export function journaled(source: string): string {
  return `${JOURNAL_HEAD}${source}${JOURNAL_TAIL}`;
}
