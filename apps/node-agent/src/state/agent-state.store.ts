/**
 * What this agent must remember across its own restart, on disk in STATE_DIR: the fences of VM ids it
 * gave up, and the migration ends it holds. Written before the change is acknowledged to anyone (the
 * controller, a peer): a temporary file, fsync, rename over the old one, fsync of the directory, so
 * that a crash leaves either the old or the new state, never a torn one.
 *
 * Small (a few bytes per fence, one entry per recent migration) and rarely written (a handful of
 * times per migration), so the whole state is rewritten each time, synchronously.
 */
import { closeSync, fsyncSync, mkdirSync, openSync, readFileSync, renameSync, writeSync } from 'node:fs';
import path from 'node:path';
import type { Logger } from 'pino';
import { StateDirError } from '../errors.js';

export const STATE_FILE = 'agent-state.json';
const FORMAT_VERSION = 1;

/** One end of a migration as remembered: the states of agent.v1 MigrationEndState, without the prefix. */
export type MigrationEndStateName = 'SENDING' | 'READY' | 'RELEASED' | 'ABORTED' | 'RECEIVING' | 'COMMITTED' | 'RESUMED' | 'LOST';

export interface PersistedMigrationEnd {
  migrationId: string;
  vmId: string;
  role: 'source' | 'target';
  state: MigrationEndStateName;
  /** Source: the epoch of its copy. Target: the committed epoch (0 until committed). */
  fencingEpoch: number;
  /** Wall clock of the last change (retention of settled ends). */
  updatedAtMs: number;
}

export interface AgentState {
  version: typeof FORMAT_VERSION;
  fences: Record<string, number>;
  migrations: Record<string, PersistedMigrationEnd>;
}

const emptyState = (): AgentState => ({ version: FORMAT_VERSION, fences: {}, migrations: {} });

/**
 * The state file of one agent. Without a directory (unit tests) it keeps the state in memory only.
 */
export class AgentStateStore {
  private state: AgentState;

  private constructor(
    private readonly dir: string | undefined,
    state: AgentState,
  ) {
    this.state = state;
  }

  /**
   * Loads STATE_DIR's state (an absent file is a fresh node).
   * @throws StateDirError when the directory cannot be created or the file is not a state this version reads
   */
  static open(dir: string | undefined, log?: Logger): AgentStateStore {
    if (!dir) return new AgentStateStore(undefined, emptyState());
    try {
      mkdirSync(dir, { recursive: true });
    } catch (err) {
      throw new StateDirError(dir, `cannot create it: ${(err as Error).message}`);
    }
    const file = path.join(dir, STATE_FILE);
    let text: string;
    try {
      text = readFileSync(file, 'utf8');
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') return new AgentStateStore(dir, emptyState());
      throw new StateDirError(dir, `cannot read ${STATE_FILE}: ${(err as Error).message}`);
    }
    const state = parseState(text, dir);
    log?.info({ stateDir: dir, fences: Object.keys(state.fences).length, migrations: Object.keys(state.migrations).length }, 'agent state loaded');
    return new AgentStateStore(dir, state);
  }

  get directory(): string | undefined {
    return this.dir;
  }

  fences(): Readonly<Record<string, number>> {
    return this.state.fences;
  }

  migrations(): PersistedMigrationEnd[] {
    return Object.values(this.state.migrations);
  }

  /** Applies `change` to a copy of the state and makes it durable; the in-memory state changes only once it is. */
  update(change: (draft: AgentState) => void): void {
    const next: AgentState = structuredClone(this.state);
    change(next);
    this.write(next);
    this.state = next;
  }

  private write(state: AgentState): void {
    if (!this.dir) return;
    const file = path.join(this.dir, STATE_FILE);
    const tmp = `${file}.tmp`;
    const fd = openSync(tmp, 'w', 0o600);
    try {
      writeSync(fd, JSON.stringify(state));
      fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
    renameSync(tmp, file);
    // The rename itself is durable only once the directory is.
    const dirFd = openSync(this.dir, 'r');
    try {
      fsyncSync(dirFd);
    } finally {
      closeSync(dirFd);
    }
  }
}

function parseState(text: string, dir: string): AgentState {
  let raw: unknown;
  try {
    raw = JSON.parse(text);
  } catch (err) {
    throw new StateDirError(dir, `${STATE_FILE} is not JSON: ${(err as Error).message}`);
  }
  const r = raw as Partial<AgentState> | null;
  if (!r || r.version !== FORMAT_VERSION || typeof r.fences !== 'object' || typeof r.migrations !== 'object') {
    throw new StateDirError(dir, `${STATE_FILE} is not a version-${FORMAT_VERSION} agent state`);
  }
  const fences: Record<string, number> = {};
  for (const [vmId, epoch] of Object.entries(r.fences ?? {})) {
    if (Number.isSafeInteger(epoch) && epoch >= 0) fences[vmId] = epoch;
  }
  const migrations: Record<string, PersistedMigrationEnd> = {};
  for (const [id, end] of Object.entries(r.migrations ?? {})) {
    if (end && typeof end.vmId === 'string' && (end.role === 'source' || end.role === 'target')) migrations[id] = { ...end, migrationId: id };
  }
  return { version: FORMAT_VERSION, fences, migrations };
}
