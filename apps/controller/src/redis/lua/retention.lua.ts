/** The Lua script of migration retention (MIGRATION_RETENTION): removing a finished migration. */

/**
 * Remove a finished migration: its record, its entries in the migrations and VM-migrations indexes
 * and any in-flight slot it still holds. Only a migration in a final phase (`final`) that is not open:
 * a final phase is never left, so the caller's check of its end time cannot go stale.
 *
 * Input:  KEYS[1] migration hash   KEYS[2] migrations zset   KEYS[3] vm-migrations zset
 *         KEYS[4] open migrations set   KEYS[5] active set   KEYS[6] source's outbound set
 *         KEYS[7] target's inbound set
 *         ARGV[1] { migrationId, final: [phase…] }
 * Output: 1 if removed, 0 if missing, open or not final
 */
export const REMOVE_FINISHED_MIGRATION_LUA = `
local a = cjson.decode(ARGV[1])
local phase = redis.call('HGET', KEYS[1], 'phase')
if not phase then return 0 end
local final = false
for _, p in ipairs(a.final) do if p == phase then final = true end end
if not final or redis.call('SISMEMBER', KEYS[4], a.migrationId) == 1 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('ZREM', KEYS[2], a.migrationId)
redis.call('ZREM', KEYS[3], a.migrationId)
redis.call('SREM', KEYS[5], a.migrationId)
redis.call('SREM', KEYS[6], a.migrationId)
redis.call('SREM', KEYS[7], a.migrationId)
return 1
`;
