/** Migration records ⇄ Redis hash fields, and the change events the scripts publish. */
import { fromProtoPhase } from '@vmm/migration/phase';
import type { cluster } from '@vmm/proto';
import type { MigrationRecord, PhaseTransition } from '../migration/migration-record.js';

const num = (v: string | undefined): number => {
  const n = Number(v);
  return v === undefined || v === '' || !Number.isFinite(n) ? 0 : n;
};

/** `transitions` as the scripts append it: "PHASE@ms;" per phase entered (proto names). */
export function parseTransitions(text: string | undefined): PhaseTransition[] {
  const out: PhaseTransition[] = [];
  for (const item of (text ?? '').split(';')) {
    const at = item.lastIndexOf('@');
    if (at <= 0) continue;
    const phase = fromProtoPhase(item.slice(0, at));
    if (phase) out.push({ phase, timeMs: num(item.slice(at + 1)) });
  }
  return out;
}

export function hashToMigration(h: Record<string, string>): MigrationRecord | undefined {
  if (!h.migrationId) return undefined;
  const phase = fromProtoPhase(h.phase ?? '') ?? 'FAILED';
  let policy: cluster.MigrationPolicy;
  try {
    policy = JSON.parse(h.policy ?? '{}') as cluster.MigrationPolicy;
  } catch {
    policy = {} as cluster.MigrationPolicy;
  }
  return {
    migrationId: h.migrationId,
    vmId: h.vmId ?? '',
    sourceNodeId: h.sourceNodeId ?? '',
    targetNodeId: h.targetNodeId ?? '',
    phase,
    round: num(h.round),
    pagesTotal: num(h.pagesTotal),
    pagesSent: num(h.pagesSent),
    bytesSent: num(h.bytesSent),
    dirtyPagesRemaining: num(h.dirtyPagesRemaining),
    dirtyRatePagesPerSec: num(h.dirtyRatePagesPerSec),
    throughputBytesPerSec: num(h.throughputBytesPerSec),
    expectedDowntimeMs: num(h.expectedDowntimeMs),
    downtimeMs: num(h.downtimeMs),
    totalTimeMs: num(h.totalTimeMs),
    throttlePercent: num(h.throttlePercent),
    sourceDigest: h.sourceDigest ?? '',
    targetDigest: h.targetDigest ?? '',
    error: h.error ?? '',
    errorReason: h.errorReason ?? '',
    policy,
    reason: h.reason ?? '',
    createdAtMs: num(h.createdAtMs),
    startedAtMs: num(h.startedAtMs),
    finishedAtMs: num(h.finishedAtMs),
    token: h.token ?? '',
    dataAddress: h.dataAddress ?? '',
    pausedAtMs: num(h.pausedAtMs),
    vcpus: num(h.vcpus),
    memoryMib: num(h.memoryMib),
    antiAffinityGroup: h.antiAffinityGroup ?? '',
    reserved: h.reserved === '1',
    sourceEpoch: num(h.sourceEpoch),
    fencingEpoch: num(h.fencingEpoch),
    committedAtMs: num(h.committedAtMs),
    targetResumedAtMs: num(h.targetResumedAtMs),
    revertedEpoch: num(h.revertedEpoch),
    transitions: parseTransitions(h.transitions),
    rev: num(h.rev),
  };
}

/** An event is the migration's hash as HGETALL's flat [field, value, …] array, JSON-encoded. */
export function migrationFromEvent(payload: string): MigrationRecord | undefined {
  try {
    const flat = JSON.parse(payload) as unknown[];
    const hash: Record<string, string> = {};
    for (let i = 0; i + 1 < flat.length; i += 2) hash[String(flat[i])] = String(flat[i + 1]);
    return hashToMigration(hash);
  } catch {
    return undefined;
  }
}
