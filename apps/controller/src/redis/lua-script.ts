/**
 * A Lua script registered with ioredis (defineCommand): ioredis runs it by SHA1 and loads it again on
 * NOSCRIPT itself (after a Redis restart or SCRIPT FLUSH). Keys arrive as KEYS, arguments as ARGV.
 */
import type { Redis } from 'ioredis';
import { journaled } from './lua/journal.lua.js';
import type { RedisKeys } from './redis-keys.js';

type ScriptCommand = (numberOfKeys: number, ...keysAndArgs: (string | number)[]) => Promise<unknown>;

export class LuaScript {
  /** The command name ioredis defines on each connection: `vmm_` + the script's name in snake case. */
  private readonly command: string;

  constructor(
    readonly name: string,
    private readonly source: string,
  ) {
    this.command = `vmm_${name.replace(/[^A-Za-z0-9]/g, '_')}`;
  }

  run(redis: Redis, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    const commands = redis as unknown as Record<string, ScriptCommand | undefined>;
    if (typeof commands[this.command] !== 'function') redis.defineCommand(this.command, { lua: this.source });
    return commands[this.command]!(keys.length, ...keys, ...args);
  }

  /** Runs a script that takes its arguments as one JSON object (ARGV[1]). */
  runJson(redis: Redis, keys: readonly string[], args: object): Promise<unknown> {
    return this.run(redis, keys, [JSON.stringify(args)]);
  }
}

/**
 * A script that writes VM, node or migration records: it runs inside the change journal
 * (lua/journal.lua.ts), so that each change it makes gets a revision and a history entry in the same
 * atomic step. Every write of those records goes through one of these.
 */
export class RecordScript {
  private readonly script: LuaScript;

  constructor(name: string, source: string) {
    this.script = new LuaScript(`rec_${name}`, journaled(source));
  }

  run(redis: Redis, k: RedisKeys, keys: readonly string[], args: readonly (string | number)[]): Promise<unknown> {
    return this.script.run(redis, [...keys, k.revision(), k.changes(), k.changesLast(), k.changesCap()], args);
  }

  runJson(redis: Redis, k: RedisKeys, keys: readonly string[], args: object): Promise<unknown> {
    return this.run(redis, k, keys, [JSON.stringify(args)]);
  }
}
