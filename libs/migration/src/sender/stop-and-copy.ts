/**
 * STOP_AND_COPY: pause the source, send the pages dirtied since the last sync and the device state,
 * compare digests. Ends with the source paused and the target holding a verified copy (ready to
 * commit); any failure is the caller's to roll back.
 */
import type { VirtualMachine } from '@vmm/emulator';
import { DigestMismatchError, SwitchOverTimeoutError } from '../errors.js';
import { trace } from '../trace.js';
import type { OutgoingStream } from './outgoing-stream.js';
import type { ProgressFields } from './precopy.js';

export interface StopAndCopyContext {
  stream: OutgoingStream;
  vm: VirtualMachine;
  migrationId: string;
  /** The round the pause sends (the last pre-copy round + 1). */
  round: number;
  /** The pause's bound before VERIFIED: then the session fails with SWITCHOVER_TIMEOUT (the caller rolls back). */
  switchOverTimeoutMs: number;
  /** Reports the pause as it happens (merged into the last round's figures; must not block: the VM is down). */
  report(progress: Partial<ProgressFields>): void;
}

export interface PausedCopy {
  sourceDigest: string;
  targetDigest: string;
  /** Epoch ms of the pause (sub-ms precision): downtime runs from here to the target's resume. */
  pausedAtMs: number;
  /** performance.now() of the pause. */
  pausedAtPerf: number;
  stopAndCopyPages: number;
}

/**
 * @throws DigestMismatchError when the target's digest differs from the source's; SwitchOverTimeoutError
 *   when VERIFIED did not arrive within the bound
 */
export async function stopAndCopy(ctx: StopAndCopyContext): Promise<PausedCopy> {
  const { stream, vm, migrationId, round } = ctx;
  vm.pause();
  const pausedAtPerf = performance.now();
  // Bounds the pause up to VERIFIED only: once the target verified, the verdict is the controller's.
  const bound = setTimeout(() => stream.session.fail(new SwitchOverTimeoutError(migrationId, ctx.switchOverTimeoutMs)), ctx.switchOverTimeoutMs);
  try {
    return await pausedCopy(ctx, pausedAtPerf);
  } finally {
    clearTimeout(bound);
  }
}

async function pausedCopy(ctx: StopAndCopyContext, pausedAtPerf: number): Promise<PausedCopy> {
  const { stream, vm, migrationId, round } = ctx;
  const pausedAtMs = performance.timeOrigin + pausedAtPerf;
  // Throttling was a migration aid: neither the target nor a rolled-back source keeps it.
  vm.setThrottle(0);
  // The pages of the last pre-copy sync were not sent yet: add what was written since.
  const dirty = stream.addLateDirty();
  // Watchers see the pause when it happens (the listener must not block: the VM is down).
  ctx.report({ round, pagesSent: stream.pagesSent, bytesSent: stream.bytesWritten, dirtyPagesRemaining: dirty, throttlePercent: 0, pausedAtMs });
  const stopAndCopyPages = await stream.sendRound(round, 'dirty', true);
  const sentAt = performance.now();
  await stream.sendDeviceState(vm.saveDeviceState());
  const sourceDigest = vm.memory.digest();
  const digestAt = performance.now();
  await stream.sendComplete(sourceDigest);
  const targetDigest = await stream.verified();
  trace(migrationId, () => {
    const now = performance.now();
    return `stop-and-copy: ${stopAndCopyPages} pages queued in ${(sentAt - pausedAtPerf).toFixed(1)} ms, source digest ${(digestAt - sentAt).toFixed(1)} ms, VERIFIED after ${(now - digestAt).toFixed(1)} ms more (paused ${(now - pausedAtPerf).toFixed(1)} ms)`;
  });
  if (targetDigest !== sourceDigest) throw new DigestMismatchError(migrationId, sourceDigest, targetDigest);
  return { sourceDigest, targetDigest, pausedAtMs, pausedAtPerf, stopAndCopyPages };
}
