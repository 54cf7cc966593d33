/**
 * The migration ends this agent holds, as it must remember them across its own restart (STATE_DIR):
 * which migration, which VM, which role, how far it got, under which epoch. Every change is durable
 * before the agent acknowledges it (the runners change state only through here), and every entry is
 * reported to the controller until it has been settled for a while.
 *
 * A restarted agent finds the ends of its previous process: those not settled are LOST (emulator VMs
 * live in the agent's memory and died with it), which tells the controller that a committed target
 * never resumed, so the source's verified copy may run on.
 */
import { agent, cluster } from '@vmm/proto';
import type { AgentStateStore, MigrationEndStateName, PersistedMigrationEnd } from '../state/agent-state.store.js';

/** How long a settled end is remembered: retries of the controller's calls stay idempotent. */
export const RETAIN_SETTLED_MS = 10 * 60_000;
/** How long a settled end is still reported (the controller reconciles its copies from reports). */
export const REPORT_SETTLED_MS = 5 * 60_000;

/** The state of an end that is over: nothing on this node changes for it any more. */
const SETTLED: ReadonlySet<MigrationEndStateName> = new Set(['RELEASED', 'ABORTED', 'RESUMED', 'LOST']);

export function isSettled(state: MigrationEndStateName): boolean {
  return SETTLED.has(state);
}

const PROTO_STATE: Readonly<Record<MigrationEndStateName, agent.MigrationEndState>> = {
  SENDING: agent.MigrationEndState.MIGRATION_END_STATE_SENDING,
  READY: agent.MigrationEndState.MIGRATION_END_STATE_READY,
  RELEASED: agent.MigrationEndState.MIGRATION_END_STATE_RELEASED,
  ABORTED: agent.MigrationEndState.MIGRATION_END_STATE_ABORTED,
  RECEIVING: agent.MigrationEndState.MIGRATION_END_STATE_RECEIVING,
  COMMITTED: agent.MigrationEndState.MIGRATION_END_STATE_COMMITTED,
  RESUMED: agent.MigrationEndState.MIGRATION_END_STATE_RESUMED,
  LOST: agent.MigrationEndState.MIGRATION_END_STATE_LOST,
};

export class MigrationLedger {
  constructor(
    private readonly store: AgentStateStore,
    private readonly wallMs: () => number = Date.now,
  ) {}

  /**
   * After a restart: every end the previous process had not settled is LOST (its copy died with it).
   * Returns those ends.
   */
  markUnsettledLost(): PersistedMigrationEnd[] {
    const lost = this.store.migrations().filter((e) => !isSettled(e.state));
    if (lost.length === 0) return [];
    const now = this.wallMs();
    this.store.update((s) => {
      for (const e of lost) s.migrations[e.migrationId] = { ...e, state: 'LOST', updatedAtMs: now };
    });
    return lost;
  }

  get(migrationId: string): PersistedMigrationEnd | undefined {
    return this.store.migrations().find((e) => e.migrationId === migrationId);
  }

  /** Records (durably) that an end reached `state`; prunes ends settled long ago. */
  record(end: Omit<PersistedMigrationEnd, 'updatedAtMs'>): void {
    const now = this.wallMs();
    this.store.update((s) => {
      s.migrations[end.migrationId] = { ...end, updatedAtMs: now };
      for (const [id, e] of Object.entries(s.migrations)) {
        if (isSettled(e.state) && now - e.updatedAtMs > RETAIN_SETTLED_MS) delete s.migrations[id];
      }
    });
  }

  /** What the next report carries: every unsettled end, and the recently settled ones. */
  reported(): agent.MigrationEnd[] {
    const now = this.wallMs();
    return this.store
      .migrations()
      .filter((e) => !isSettled(e.state) || now - e.updatedAtMs <= REPORT_SETTLED_MS)
      .map((e) => ({
        migrationId: e.migrationId,
        vmId: e.vmId,
        role: e.role === 'source' ? cluster.MigrationRole.MIGRATION_ROLE_SOURCE : cluster.MigrationRole.MIGRATION_ROLE_TARGET,
        state: PROTO_STATE[e.state],
        fencingEpoch: e.fencingEpoch,
      }));
  }
}
