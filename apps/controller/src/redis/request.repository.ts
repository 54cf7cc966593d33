/**
 * The calls made with a request_id (Redis hash `req:<method>:<id>`): who claimed it, the fingerprint of
 * the request, and once done the response, kept for 24 h. A claim lasts as long as a call may run
 * (a controller that died mid-call leaves one that lapses), the response a day.
 */
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import { LuaScript } from './lua-script.js';
import type { RedisKeys } from './redis-keys.js';
import { REDIS, REDIS_KEYS } from './redis.provider.js';

export type RequestClaim =
  /** Nobody had this id: the caller carries the call out and then completes or releases it. */
  | { kind: 'claimed' }
  /** Another call with this id is under way. */
  | { kind: 'pending'; fingerprint: string }
  /** A call with this id is done: its response (base64 of the encoded message). */
  | { kind: 'done'; fingerprint: string; response: string };

/**
 * KEYS[1] the request hash; ARGV: fingerprint, claim lifetime (ms).
 * Returns { 'claimed' } or { state, fingerprint, response }.
 */
const CLAIM_LUA = `
if redis.call('EXISTS', KEYS[1]) == 0 then
  redis.call('HSET', KEYS[1], 'state', 'pending', 'fingerprint', ARGV[1])
  redis.call('PEXPIRE', KEYS[1], ARGV[2])
  return { 'claimed' }
end
local f = redis.call('HMGET', KEYS[1], 'state', 'fingerprint', 'response')
return { f[1] or 'pending', f[2] or '', f[3] or '' }
`;

/** KEYS[1] the request hash; ARGV: fingerprint, response, lifetime (ms). Only the claimer's fingerprint completes. */
const COMPLETE_LUA = `
if redis.call('HGET', KEYS[1], 'fingerprint') ~= ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'state', 'done', 'response', ARGV[2])
redis.call('PEXPIRE', KEYS[1], ARGV[3])
return 1
`;

/** KEYS[1] the request hash: dropped if still pending (the call failed and changed nothing). */
const RELEASE_LUA = `
if redis.call('HGET', KEYS[1], 'state') == 'pending' then redis.call('DEL', KEYS[1]) end
return 1
`;

const claim = new LuaScript('request-claim', CLAIM_LUA);
const complete = new LuaScript('request-complete', COMPLETE_LUA);
const release = new LuaScript('request-release', RELEASE_LUA);

/** How long a request_id's response is kept: docs/api.md ("Calls that are safe to retry"). */
export const REQUEST_RETENTION_MS = 24 * 60 * 60 * 1000;

@Injectable()
export class RequestRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
  ) {}

  async claim(method: string, requestId: string, fingerprint: string, claimMs: number): Promise<RequestClaim> {
    const reply = (await claim.run(this.redis, [this.keys.request(method, requestId)], [fingerprint, claimMs])) as string[];
    if (reply[0] === 'claimed') return { kind: 'claimed' };
    return reply[0] === 'done' ? { kind: 'done', fingerprint: reply[1]!, response: reply[2]! } : { kind: 'pending', fingerprint: reply[1]! };
  }

  async complete(method: string, requestId: string, fingerprint: string, response: string): Promise<void> {
    await complete.run(this.redis, [this.keys.request(method, requestId)], [fingerprint, response, REQUEST_RETENTION_MS]);
  }

  async release(method: string, requestId: string): Promise<void> {
    await release.run(this.redis, [this.keys.request(method, requestId)], []);
  }
}
