/**
 * `vmctl events [--since R] [--kind vm|node|migration]`: follows WatchEvents, one line per event
 * (`--json`: one JSON object per line), until Ctrl-C. A revision older than the controller's history
 * ends it with OUT_OF_RANGE (exit 1): list again and watch from the list's revision.
 */
import { status } from '@grpc/grpc-js';
import { cluster } from '@vmm/proto';
import { isServiceError, UsageError } from '../errors.js';
import { type CommandContext, interruptible, printJsonLine } from './context.js';

export interface EventsOptions {
  since?: string;
  kind?: string[];
}

const KINDS: Record<string, cluster.EventKind> = {
  vm: cluster.EventKind.EVENT_KIND_VM,
  node: cluster.EventKind.EVENT_KIND_NODE,
  migration: cluster.EventKind.EVENT_KIND_MIGRATION,
};

/** The request from the command line: `--since` a whole number, `--kind` (repeatable, or comma-separated) among KINDS. */
export function buildWatchRequest(opts: EventsOptions): cluster.WatchEventsRequest {
  const since = opts.since ?? '0';
  if (!/^\d+$/.test(since) || !Number.isSafeInteger(Number(since))) throw new UsageError(`--since: expected a revision (a whole number), got ${JSON.stringify(since)}`);
  const kinds = (opts.kind ?? []).flatMap((k) => k.split(',')).map((k) => k.trim()).filter((k) => k !== '');
  for (const k of kinds) if (!(k in KINDS)) throw new UsageError(`--kind: expected vm, node or migration, got ${JSON.stringify(k)}`);
  return { sinceRevision: Number(since), kinds: [...new Set(kinds)].map((k) => KINDS[k]!) };
}

/** One event as a line: revision, type, kind, id, and what a reader wants to know of the object. */
export function formatEvent(e: cluster.Event): string {
  const type = e.type.replace('EVENT_TYPE_', '').padEnd(8);
  const head = `${String(e.revision).padStart(6)}  ${type}`;
  if (e.vm) {
    const v = e.vm;
    return `${head}  vm         ${v.vmId}  ${v.name} ${v.state.replace('VM_STATE_', '')} on ${v.nodeId || '-'}`;
  }
  if (e.node) {
    const n = e.node;
    return `${head}  node       ${n.nodeId}  ${n.state.replace('NODE_STATE_', '')} ${n.vmCount} vms${n.cordoned ? ' cordoned' : ''}`;
  }
  if (e.migration) {
    const m = e.migration;
    const reason = m.reason ? ` (${m.reason})` : '';
    return `${head}  migration  ${m.migrationId}  ${m.vmId} ${m.sourceNodeId} → ${m.targetNodeId} ${m.phase.replace('MIGRATION_PHASE_', '')}${reason}`;
  }
  return `${head}  ?`;
}

export async function eventsCommand(ctx: CommandContext, opts: EventsOptions): Promise<void> {
  await followEvents(ctx, buildWatchRequest(opts), (e) => {
    if (ctx.json) printJsonLine(ctx, e);
    else ctx.io.out(`${formatEvent(e)}\n`);
  });
}

/** Follows WatchEvents until Ctrl-C (resolves) or the stream ends or fails (rejects with its error). */
export function followEvents(ctx: CommandContext, request: cluster.WatchEventsRequest, onEvent: (e: cluster.Event) => void): Promise<void> {
  return interruptible(ctx, (signal) =>
    new Promise<void>((resolve, reject) => {
      const stream = ctx.api.watchEvents(request);
      let stopped = false;
      const onAbort = () => {
        stopped = true;
        stream.cancel();
        resolve();
      };
      signal.addEventListener('abort', onAbort, { once: true });
      stream.on('data', (e: cluster.Event) => onEvent(e));
      stream.on('error', (err) => {
        signal.removeEventListener('abort', onAbort);
        if (stopped && isServiceError(err) && err.code === status.CANCELLED) resolve();
        else reject(err);
      });
      stream.on('end', () => {
        signal.removeEventListener('abort', onAbort);
        resolve();
      });
    }),
  );
}

/**
 * `-w`: renders a list, then again after every change of its kind (WatchEvents), until Ctrl-C; bursts
 * of events are drawn once (100 ms quiet). On a terminal each drawing replaces the last.
 */
export async function watchList(ctx: CommandContext, kind: cluster.EventKind, render: () => Promise<string>): Promise<void> {
  const draw = async () => {
    const text = await render();
    ctx.io.out(ctx.io.colour ? `\x1b[H\x1b[2J${text}` : `${text}\n`);
  };
  await draw();
  let timer: NodeJS.Timeout | undefined;
  let drawing = Promise.resolve();
  // From revision 0 the stream starts with the objects just drawn (one redundant drawing), so that no
  // change between the first list and the watch is missed.
  await followEvents(ctx, { sinceRevision: 0, kinds: [kind] }, () => {
    clearTimeout(timer);
    timer = setTimeout(() => {
      drawing = drawing.then(draw, draw);
    }, 100);
  });
  clearTimeout(timer);
  await drawing;
}
