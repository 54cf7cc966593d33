/**
 * The change history the journal writes (lua/journal.lua.ts), for WatchEvents and the lists'
 * `revision`: the cluster-wide revision, the entries after a revision, the oldest one kept, and one
 * shared blocking reader (XREAD BLOCK on its own connection) that wakes every watcher when entries
 * arrive, so that no watcher polls Redis on its own.
 */
import { Inject, Injectable, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { Redis } from 'ioredis';
import { LOGGER, type Logger } from '../common/logger.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import type { RedisKeys } from './redis-keys.js';
import { REDIS, REDIS_KEYS } from './redis.provider.js';

export type ChangeKind = 'vm' | 'node' | 'migration';
export type ChangeType = 'ADDED' | 'MODIFIED' | 'DELETED';

export interface Change {
  revision: number;
  kind: ChangeKind;
  id: string;
  type: ChangeType;
  /** DELETED: the record's hash as it was last. */
  last?: Record<string, string>;
}

/** The blocking read returns at least this often (ms), and then wakes every watcher anyway. */
export const WAKE_AT_LEAST_EVERY_MS = 5_000;

/** A stream entry (`[id, [field, value, …]]`) as a Change; undefined for an entry of another shape. */
export function parseChange(id: string, flat: readonly string[]): Change | undefined {
  const f: Record<string, string> = {};
  for (let i = 0; i + 1 < flat.length; i += 2) f[flat[i]!] = flat[i + 1]!;
  const revision = Number(id.split('-')[0]);
  if (!Number.isSafeInteger(revision) || !f.id) return undefined;
  if (f.kind !== 'vm' && f.kind !== 'node' && f.kind !== 'migration') return undefined;
  if (f.type !== 'ADDED' && f.type !== 'MODIFIED' && f.type !== 'DELETED') return undefined;
  const change: Change = { revision, kind: f.kind, id: f.id, type: f.type };
  if (f.last) {
    const pairs = JSON.parse(f.last) as string[];
    const last: Record<string, string> = {};
    for (let i = 0; i + 1 < pairs.length; i += 2) last[pairs[i]!] = pairs[i + 1]!;
    change.last = last;
  }
  return change;
}

type StreamEntries = [string, string[]][];

@Injectable()
export class ChangesRepository implements OnModuleInit, OnModuleDestroy {
  private reader: Redis | undefined;
  private readonly listeners = new Set<() => void>();
  private reading = false;
  private destroyed = false;

  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
  ) {}

  /** Tells the journal how many entries to keep (WATCH_HISTORY). */
  async onModuleInit(): Promise<void> {
    await this.redis.set(this.keys.changesCap(), String(this.config.watchHistory));
  }

  /** The cluster-wide revision: that of the newest change (0 before any). */
  async revision(): Promise<number> {
    return Number((await this.redis.get(this.keys.revision())) ?? '0');
  }

  /** Up to `count` changes after `revision`, oldest first. */
  async after(revision: number, count: number): Promise<Change[]> {
    const entries = (await this.redis.xrange(this.keys.changes(), `(${revision}-0`, '+', 'COUNT', count)) as StreamEntries;
    return entries.map(([id, flat]) => parseChange(id, flat)).filter((c): c is Change => c !== undefined);
  }

  /** The revision of the oldest change kept, undefined when none is. */
  async oldest(): Promise<number | undefined> {
    const [first] = (await this.redis.xrange(this.keys.changes(), '-', '+', 'COUNT', 1)) as StreamEntries;
    return first ? Number(first[0].split('-')[0]) : undefined;
  }

  /**
   * Calls `listener` after new changes arrive (and at least every WAKE_AT_LEAST_EVERY_MS) until the
   * returned function is called. Every change made after onChange returned wakes it.
   */
  async onChange(listener: () => void): Promise<() => void> {
    this.listeners.add(listener);
    if (!this.reading) {
      // Start from the current revision: a change after this call wakes the listener.
      const from = `${await this.revision()}-0`;
      if (!this.reading) this.read(from);
    }
    return () => {
      this.listeners.delete(listener);
    };
  }

  private read(from: string): void {
    this.reading = true;
    this.reader ??= this.newReader();
    const reader = this.reader;
    void (async () => {
      let last = from;
      while (this.listeners.size > 0 && !this.destroyed) {
        try {
          const result = (await reader.xread('COUNT', 1000, 'BLOCK', WAKE_AT_LEAST_EVERY_MS, 'STREAMS', this.keys.changes(), last)) as
            | [string, StreamEntries][]
            | null;
          const entries = result?.[0]?.[1] ?? [];
          if (entries.length > 0) last = entries.at(-1)![0];
        } catch (err) {
          if (this.destroyed) break;
          this.logger.warn({ err: (err as Error).message }, 'change history read failed');
          await new Promise((resolve) => setTimeout(resolve, 500));
        }
        for (const listener of [...this.listeners]) listener();
      }
      this.reading = false;
    })();
  }

  private newReader(): Redis {
    // Its own connection: XREAD BLOCK holds it for the whole wait.
    const reader = new Redis(this.config.redisUrl, { maxRetriesPerRequest: null });
    reader.on('error', (err) => this.logger.warn({ err: err.message }, 'change history redis error'));
    return reader;
  }

  onModuleDestroy(): void {
    this.destroyed = true;
    this.listeners.clear();
    this.reader?.disconnect();
  }
}
