/**
 * How long the controller follows a source's progress stream: the policy's completion timeout
 * (150 s per GiB of the VM by default, as @vmm/migration's policy resolves it) plus time for
 * preparing, the last round and verification.
 */
import { resolvePolicy } from '@vmm/migration/policy';
import type { cluster } from '@vmm/proto';

/** Beyond the completion timeout: the stream's set-up, the last round, both digests. */
export const STREAM_MARGIN_MS = 60_000;

export function streamDeadlineMs(policy: cluster.MigrationPolicy | undefined, memoryMib: number): number {
  const completionTimeoutMs = resolvePolicy({ completionTimeoutMs: Number(policy?.completionTimeoutMs ?? 0) }, memoryMib * 1024 * 1024).completionTimeoutMs;
  return completionTimeoutMs + STREAM_MARGIN_MS;
}
