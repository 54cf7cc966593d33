/**
 * WatchEvents: the changes of VMs, nodes and migrations after a revision, as etcd and Kubernetes
 * watches send them. With since_revision 0, first every current object as ADDED (at the revision read
 * before listing), then every change after it. A revision older than the history kept ends the stream
 * with REVISION_COMPACTED (OUT_OF_RANGE): list again and watch from the list's revision.
 *
 * Each watcher keeps its own cursor and reads the history (XRANGE) only when the shared blocking
 * reader of ChangesRepository wakes it. ADDED and MODIFIED objects are read whole when they are sent
 * (so an object may already show a later change, which then follows as its own event); one that is
 * gone by then is sent as it was last (from its DELETED entry). DELETED carries the object as it was last.
 */
import { Inject, Injectable } from '@nestjs/common';
import { Observable } from 'rxjs';
import { cluster } from '@vmm/proto';
import { RevisionCompactedError } from '../errors.js';
import { toProtoMigration } from '../migration/migration-record.js';
import { NodeService } from '../node/node.service.js';
import { ChangesRepository, type Change, type ChangeKind } from '../redis/changes.repository.js';
import { MigrationRepository } from '../redis/migration.repository.js';
import { hashToMigration } from '../redis/migration-codec.js';
import { NodeRepository } from '../redis/node.repository.js';
import { hashToNode, hashToVm } from '../redis/record-codec.js';
import { VmRepository } from '../redis/vm.repository.js';
import { toProtoVm } from '../vm/vm.service.js';

const { EventKind, EventType } = cluster;

/** Changes read from the history per XRANGE. */
const BATCH = 200;
/** Records read per page of the snapshot (since_revision 0). */
const SNAPSHOT_PAGE = 500;

const KIND_OF: Partial<Record<cluster.EventKind, ChangeKind>> = {
  [EventKind.EVENT_KIND_VM]: 'vm',
  [EventKind.EVENT_KIND_NODE]: 'node',
  [EventKind.EVENT_KIND_MIGRATION]: 'migration',
};

/** The kinds a request asks for; empty (or only UNSPECIFIED) = all. */
export function requestedKinds(kinds: readonly cluster.EventKind[] | undefined): Set<ChangeKind> {
  const set = new Set((kinds ?? []).map((k) => KIND_OF[k]).filter((k): k is ChangeKind => k !== undefined));
  return set.size > 0 ? set : new Set<ChangeKind>(['vm', 'node', 'migration']);
}

/**
 * Whether watching from `since` misses changes that the history no longer holds: the history keeps
 * the contiguous revisions oldest..current, so `since` must be at least oldest - 1.
 */
export function isCompacted(since: number, oldest: number | undefined, current: number): boolean {
  if (since >= current) return false;
  return oldest === undefined || since < oldest - 1;
}

type Obj = Pick<cluster.Event, 'vm' | 'node' | 'migration'>;

@Injectable()
export class EventsService {
  constructor(
    @Inject(ChangesRepository) private readonly changes: ChangesRepository,
    @Inject(VmRepository) private readonly vms: VmRepository,
    @Inject(NodeRepository) private readonly nodeRecords: NodeRepository,
    @Inject(NodeService) private readonly nodes: NodeService,
    @Inject(MigrationRepository) private readonly migrations: MigrationRepository,
  ) {}

  /** The cluster-wide revision, read before a list so that a watch from it misses nothing. */
  revision(): Promise<number> {
    return this.changes.revision();
  }

  watch(req: Partial<cluster.WatchEventsRequest>): Observable<cluster.Event> {
    const since = Math.max(0, Math.trunc(req.sinceRevision ?? 0));
    const kinds = requestedKinds(req.kinds);
    return new Observable<cluster.Event>((subscriber) => {
      let closed = false;
      let cursor = since;
      // Busy until the start is done; a wake meanwhile is remembered in `again`.
      let busy = true;
      let again = false;
      let stop: (() => void) | undefined;
      const fail = (error: unknown) => {
        if (closed) return;
        closed = true;
        stop?.();
        subscriber.error(error);
      };
      const pump = async (): Promise<void> => {
        if (busy) {
          again = true;
          return;
        }
        busy = true;
        try {
          do {
            again = false;
            for (;;) {
              const batch = await this.changes.after(cursor, BATCH);
              if (closed || batch.length === 0) break;
              // Revisions are contiguous: a gap means the entries after the cursor were trimmed.
              if (batch[0]!.revision > cursor + 1) throw new RevisionCompactedError(cursor, batch[0]!.revision);
              for (const [i, change] of batch.entries()) {
                if (closed) return;
                const event = kinds.has(change.kind) ? await this.toEvent(change, batch, i) : undefined;
                if (event && !closed) subscriber.next(event);
                cursor = change.revision;
              }
            }
          } while (again && !closed);
        } finally {
          busy = false;
        }
      };
      const wake = () => {
        if (!closed) pump().catch(fail);
      };
      void (async () => {
        stop = await this.changes.onChange(wake);
        if (closed) return stop();
        if (since === 0) {
          cursor = await this.changes.revision();
          for await (const obj of this.snapshot(kinds)) {
            if (closed) return;
            subscriber.next({ revision: cursor, type: EventType.EVENT_TYPE_ADDED, ...obj });
          }
        } else {
          const [oldest, current] = await Promise.all([this.changes.oldest(), this.changes.revision()]);
          if (isCompacted(since, oldest, current)) throw new RevisionCompactedError(since, oldest ?? current + 1);
        }
        busy = false;
        await pump();
      })().catch(fail);
      return () => {
        closed = true;
        stop?.();
      };
    });
  }

  /** Every current object of the kinds asked for: nodes, then VMs, then migrations. */
  private async *snapshot(kinds: Set<ChangeKind>): AsyncGenerator<Obj> {
    if (kinds.has('node')) for (const node of await this.nodes.list()) yield { node };
    if (kinds.has('vm')) {
      for (let after = '', more = true; more; ) {
        const page = await this.vms.listPage(after, SNAPSHOT_PAGE, '');
        for (const vm of page.vms) yield { vm: toProtoVm(vm) };
        more = page.more && page.vms.length > 0;
        after = page.vms.at(-1)?.vmId ?? after;
      }
    }
    if (kinds.has('migration')) {
      for (let after = '', more = true; more; ) {
        const page = await this.migrations.listPage(after, SNAPSHOT_PAGE, '');
        for (const m of page.migrations) yield { migration: toProtoMigration(m) };
        more = page.more && page.migrations.length > 0;
        after = page.migrations.at(-1)?.migrationId ?? after;
      }
    }
  }

  /**
   * The event of `batch[index]`. An object gone by now is sent as its later DELETED entry recorded it
   * last (looked for in the batch, then further on in the history).
   */
  private async toEvent(change: Change, batch: readonly Change[], index: number): Promise<cluster.Event | undefined> {
    let obj = change.type === 'DELETED' ? this.lastObject(change) : await this.currentObject(change);
    if (!obj && change.type !== 'DELETED') {
      const deletion = await this.deletionAfter(change, batch.slice(index + 1));
      if (deletion) obj = this.lastObject(deletion);
    }
    if (!obj) return undefined;
    return { revision: change.revision, type: EventType[`EVENT_TYPE_${change.type}`], ...obj };
  }

  /** The DELETED entry of `change`'s object after it: in `rest`, else in the history beyond it. */
  private async deletionAfter(change: Change, rest: readonly Change[]): Promise<Change | undefined> {
    const isDeletion = (c: Change) => c.type === 'DELETED' && c.kind === change.kind && c.id === change.id;
    let found = rest.find(isDeletion);
    for (let after = rest.at(-1)?.revision ?? change.revision; !found; ) {
      const page = await this.changes.after(after, BATCH);
      if (page.length === 0) return undefined;
      found = page.find(isDeletion);
      after = page.at(-1)!.revision;
    }
    return found;
  }

  private lastObject(change: Change): Obj | undefined {
    const h = change.last ?? {};
    if (change.kind === 'vm') {
      const vm = hashToVm(h);
      return vm && { vm: toProtoVm(vm) };
    }
    if (change.kind === 'node') {
      const node = hashToNode(h);
      return node && { node: this.nodes.toProto(node, Date.now()) };
    }
    const m = hashToMigration(h);
    return m && { migration: toProtoMigration(m) };
  }

  private async currentObject(change: Change): Promise<Obj | undefined> {
    if (change.kind === 'vm') {
      const vm = await this.vms.get(change.id);
      return vm && { vm: toProtoVm(vm) };
    }
    if (change.kind === 'node') {
      const node = await this.nodeRecords.get(change.id);
      return node && { node: this.nodes.toProto(node, Date.now()) };
    }
    const m = await this.migrations.get(change.id);
    return m && { migration: toProtoMigration(m) };
  }
}
