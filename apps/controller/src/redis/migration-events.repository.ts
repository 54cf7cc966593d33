/**
 * Migration change events over Redis pub/sub, for WatchMigration: one subscriber connection, fanned
 * out to the watchers of each migration, each event decoded into a record here.
 *
 * Pub/sub delivers at most once: an event published while the subscriber connection is down (a Redis
 * restart, a network blip) is lost. So every watcher is also told to re-read the record when the
 * connection is back (`resync`), and at a slow period while it watches: a watch never misses the final
 * state it must end on.
 */
import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { Redis } from 'ioredis';
import { LOGGER, type Logger } from '../common/logger.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import type { MigrationRecord } from '../migration/migration-record.js';
import { migrationFromEvent } from './migration-codec.js';
import type { RedisKeys } from './redis-keys.js';
import { REDIS_KEYS } from './redis.provider.js';

/** A watcher re-reads at least this often, whatever pub/sub delivered. */
export const WATCH_RESYNC_MS = 2_000;

export interface MigrationWatcher {
  /** A change, as the script that made it published it. */
  onRecord(m: MigrationRecord): void;
  /** Events may have been lost (reconnect, or the periodic check): read the record again. */
  resync(): void;
}

@Injectable()
export class MigrationEventsRepository implements OnModuleDestroy {
  private subscriber: Redis | undefined;
  private readonly watchers = new Map<string, Set<MigrationWatcher>>();
  private resyncTimer: NodeJS.Timeout | undefined;

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
  ) {}

  private connection(): Redis {
    if (!this.subscriber) {
      const subscriber = new Redis(this.config.redisUrl, { maxRetriesPerRequest: null });
      let connectedBefore = false;
      subscriber.on('error', (err) => this.logger.warn({ err: err.message }, 'migration events redis error'));
      subscriber.on('ready', () => {
        // ioredis re-subscribes on reconnect; what was published meanwhile is gone.
        if (connectedBefore) this.resyncAll();
        connectedBefore = true;
      });
      subscriber.on('message', (channel: string, message: string) => {
        const m = migrationFromEvent(message);
        if (!m) return;
        for (const watcher of this.watchers.get(channel) ?? []) watcher.onRecord(m);
      });
      this.subscriber = subscriber;
      this.resyncTimer = setInterval(() => this.resyncAll(), WATCH_RESYNC_MS);
      this.resyncTimer.unref();
    }
    return this.subscriber;
  }

  private resyncAll(): void {
    for (const set of this.watchers.values()) for (const watcher of set) watcher.resync();
  }

  /** Subscribes; resolves once the subscription is active. Returns the unsubscribe function. */
  async subscribe(migrationId: string, watcher: MigrationWatcher): Promise<() => void> {
    const channel = this.keys.migrationEvents(migrationId);
    let set = this.watchers.get(channel);
    if (!set) {
      set = new Set();
      this.watchers.set(channel, set);
      await this.connection().subscribe(channel);
    }
    set.add(watcher);
    return () => {
      const current = this.watchers.get(channel);
      if (!current) return;
      current.delete(watcher);
      if (current.size === 0) {
        this.watchers.delete(channel);
        this.subscriber?.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  onModuleDestroy(): void {
    clearInterval(this.resyncTimer);
    this.watchers.clear();
    this.subscriber?.disconnect();
  }
}
