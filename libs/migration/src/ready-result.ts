/**
 * The ready-to-commit state both ends hand back: ready → committed or aborted, once. commit() after
 * abort() (or the reverse) throws; repeating the same verdict is a no-op (commit returns its first
 * value). An abort of the caller's signal while ready aborts.
 */
import { MigrationStateError } from './errors.js';

type Verdict = 'ready' | 'committed' | 'aborted';

export class ReadyToCommit<T> {
  private verdict: Verdict = 'ready';
  private value: T | undefined;

  constructor(
    private readonly migrationId: string,
    private readonly signal: AbortSignal | undefined,
    private readonly onCommit: () => T,
    private readonly onAbort: () => void,
  ) {
    signal?.addEventListener('abort', this.abort, { once: true });
  }

  readonly commit = (): T => {
    if (this.verdict === 'committed') return this.value as T;
    if (this.verdict === 'aborted') throw new MigrationStateError(`migration ${this.migrationId}: cannot commit after abort`);
    this.verdict = 'committed';
    this.signal?.removeEventListener('abort', this.abort);
    this.value = this.onCommit();
    return this.value;
  };

  readonly abort = (): void => {
    if (this.verdict === 'aborted') return;
    if (this.verdict === 'committed') throw new MigrationStateError(`migration ${this.migrationId}: cannot abort after commit`);
    this.verdict = 'aborted';
    this.signal?.removeEventListener('abort', this.abort);
    this.onAbort();
  };
}
