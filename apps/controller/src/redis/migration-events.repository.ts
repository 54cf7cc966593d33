/**
 * Migration change events over Redis pub/sub, for WatchMigration: one subscriber connection,
 * fanned out to the watchers of each migration.
 */
import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import { Redis } from 'ioredis';
import { LOGGER, type Logger } from '../common/logger.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import type { RedisKeys } from './redis-keys.js';
import { REDIS_KEYS } from './redis.provider.js';

export type MigrationEventListener = (payload: string) => void;

@Injectable()
export class MigrationEventsRepository implements OnModuleDestroy {
  private subscriber: Redis | undefined;
  private readonly listeners = new Map<string, Set<MigrationEventListener>>();

  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(LOGGER) private readonly logger: Logger,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
  ) {}

  private connection(): Redis {
    if (!this.subscriber) {
      this.subscriber = new Redis(this.config.redisUrl, { maxRetriesPerRequest: null });
      this.subscriber.on('error', (err) => this.logger.warn({ err: err.message }, 'migration events redis error'));
      this.subscriber.on('message', (channel: string, message: string) => {
        for (const listener of this.listeners.get(channel) ?? []) listener(message);
      });
    }
    return this.subscriber;
  }

  /** Subscribes; resolves once the subscription is active. Returns the unsubscribe function. */
  async subscribe(migrationId: string, listener: MigrationEventListener): Promise<() => void> {
    const channel = this.keys.migrationEvents(migrationId);
    let set = this.listeners.get(channel);
    if (!set) {
      set = new Set();
      this.listeners.set(channel, set);
      await this.connection().subscribe(channel);
    }
    set.add(listener);
    return () => {
      const current = this.listeners.get(channel);
      if (!current) return;
      current.delete(listener);
      if (current.size === 0) {
        this.listeners.delete(channel);
        this.subscriber?.unsubscribe(channel).catch(() => undefined);
      }
    };
  }

  onModuleDestroy(): void {
    this.listeners.clear();
    this.subscriber?.disconnect();
  }
}
