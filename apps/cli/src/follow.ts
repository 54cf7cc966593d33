import { status } from '@grpc/grpc-js';
import type { cluster } from '@vmm/proto';
import type { ClusterApi } from './client.js';
import { isServiceError } from './errors.js';
import { isTerminal } from './format/migrations.js';

/** Thrown when the user stops following (Ctrl-C); the migration itself goes on. */
export class FollowInterruptedError extends Error {
  readonly code = 'FOLLOW_INTERRUPTED';
  constructor(readonly migrationId: string) {
    super(`stopped following migration ${migrationId}; it continues (vmctl migration ${migrationId})`);
    this.name = 'FollowInterruptedError';
  }
}

const POLL_INTERVAL_MS = 500;

type StreamOutcome = { kind: 'done'; last: cluster.Migration } | { kind: 'fallback' };

/** Reads WatchMigration until a terminal phase; 'fallback' when the stream is missing or ends early. */
function watch(
  api: ClusterApi,
  migrationId: string,
  onUpdate: (m: cluster.Migration) => void,
  signal: AbortSignal,
): Promise<StreamOutcome> {
  return new Promise((resolve, reject) => {
    const stream = api.watchMigration(migrationId);
    let last: cluster.Migration | undefined;
    let settled = false;
    const settle = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      signal.removeEventListener('abort', onAbort);
      fn();
    };
    const onAbort = (): void => {
      settle(() => reject(new FollowInterruptedError(migrationId)));
      stream.cancel();
    };
    signal.addEventListener('abort', onAbort, { once: true });
    stream.on('data', (m: cluster.Migration) => {
      last = m;
      onUpdate(m);
      if (isTerminal(m)) {
        settle(() => resolve({ kind: 'done', last: m }));
        stream.cancel();
      }
    });
    stream.on('error', (err) => {
      if (isServiceError(err) && err.code === status.UNIMPLEMENTED) settle(() => resolve({ kind: 'fallback' }));
      else if (isServiceError(err) && err.code === status.CANCELLED && last && isTerminal(last)) settle(() => resolve({ kind: 'done', last: last! }));
      else settle(() => reject(err));
    });
    stream.on('end', () => settle(() => resolve(last && isTerminal(last) ? { kind: 'done', last } : { kind: 'fallback' })));
  });
}

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve) => {
    const timer = setTimeout(done, ms);
    function done(): void {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
  });
}

/**
 * Follows a migration to its end and returns its final state. Uses the WatchMigration stream and
 * falls back to polling GetMigration when the server lacks the stream or closes it too early.
 */
export async function followMigration(
  api: ClusterApi,
  migrationId: string,
  onUpdate: (m: cluster.Migration) => void,
  signal: AbortSignal = new AbortController().signal,
): Promise<cluster.Migration> {
  const outcome = await watch(api, migrationId, onUpdate, signal);
  if (outcome.kind === 'done') return outcome.last;
  for (;;) {
    if (signal.aborted) throw new FollowInterruptedError(migrationId);
    const m = await api.getMigration(migrationId);
    onUpdate(m);
    if (isTerminal(m)) return m;
    await sleep(POLL_INTERVAL_MS, signal);
  }
}
