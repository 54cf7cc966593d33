/**
 * The records a scrape reads, from the repositories. One read is shared by every series that asks for it
 * while it is in flight, so one scrape costs one pass over Redis, not one per metric family.
 */
import type { NodeRecord } from '../common/model.js';
import type { MigrationRecord } from '../migration/migration-record.js';
import type { MigrationRepository } from '../redis/migration.repository.js';
import type { NodeRepository } from '../redis/node.repository.js';
import type { MigrationQueueRepository } from '../redis/migration-queue.repository.js';
import type { VmRepository } from '../redis/vm.repository.js';
import type { VmRecord } from '../common/model.js';
import type { MetricsSource } from './cluster-metrics.js';

const PAGE = 500;

function shared<T>(read: () => Promise<T>): () => Promise<T> {
  let inFlight: Promise<T> | undefined;
  return () => (inFlight ??= read().finally(() => (inFlight = undefined)));
}

export function repositoryMetricsSource(
  nodes: Pick<NodeRepository, 'list'>,
  migrations: Pick<MigrationRepository, 'listPage'>,
  vms?: Pick<VmRepository, 'listPage'>,
  queue?: Pick<MigrationQueueRepository, 'depth'>,
): MetricsSource {
  return {
    nodes: shared((): Promise<NodeRecord[]> => nodes.list()),
    vms: shared(async (): Promise<VmRecord[]> => {
      const all: VmRecord[] = [];
      if (!vms) return all;
      let after = '';
      for (;;) {
        const page = await vms.listPage(after, PAGE, '');
        all.push(...page.vms);
        if (!page.more || page.vms.length === 0) return all;
        after = page.vms[page.vms.length - 1]!.vmId;
      }
    }),
    queueDepth: () => queue?.depth() ?? Promise.resolve({}),
    migrations: shared(async (): Promise<MigrationRecord[]> => {
      const all: MigrationRecord[] = [];
      let after = '';
      for (;;) {
        const page = await migrations.listPage(after, PAGE, '');
        all.push(...page.migrations);
        if (!page.more || page.migrations.length === 0) return all;
        after = page.migrations[page.migrations.length - 1]!.migrationId;
      }
    }),
  };
}
