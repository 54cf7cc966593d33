import { spawn } from 'node:child_process';
import { existsSync, openSync, closeSync } from 'node:fs';
import { readFile } from 'node:fs/promises';
import { setTimeout as delay } from 'node:timers/promises';
import { GuestStartError, QmpTimeoutError } from '../errors.js';
import { QmpClient } from '../qmp/qmp-client.js';
import type { GuestPaths } from './guest-paths.js';
import { isProcessAlive } from './proc-info.js';

/**
 * Starts QEMU detached (its own session, stdio to files): it outlives the agent that started it, which
 * finds it again through its QMP socket (driver rediscovery). Resolves once QMP answered.
 * @throws GuestStartError when QEMU exits first or QMP does not answer within `timeoutMs`
 */
export async function startQemu(
  binary: string,
  args: string[],
  vmId: string,
  paths: GuestPaths,
  timeoutMs: number,
): Promise<{ pid: number; qmp: QmpClient }> {
  const stderrFd = openSync(paths.stderrLog, 'w');
  /** Set by the child's events: why QEMU is not there to answer. */
  const ended: { exit?: string; spawnError?: string } = {};
  let pid: number | undefined;
  try {
    const child = spawn(binary, args, { detached: true, stdio: ['ignore', 'ignore', stderrFd] });
    child.on('exit', (code, signal) => {
      ended.exit = signal ?? `code ${code}`;
    });
    child.on('error', (err) => {
      ended.spawnError = err.message;
    });
    child.unref();
    pid = child.pid;
  } finally {
    closeSync(stderrFd);
  }
  const deadline = Date.now() + timeoutMs;
  const why = async () => {
    const stderr = (await readFile(paths.stderrLog, 'utf8').catch(() => '')).trim().slice(-2000);
    return stderr === '' ? '' : `: ${stderr}`;
  };
  for (;;) {
    if (ended.spawnError) throw new GuestStartError(vmId, `cannot run ${binary}: ${ended.spawnError}`);
    if (ended.exit) throw new GuestStartError(vmId, `QEMU exited (${ended.exit})${await why()}`);
    if (pid !== undefined && existsSync(paths.qmpSocket)) {
      try {
        const qmp = await QmpClient.connect(paths.qmpSocket, { timeoutMs: Math.max(500, deadline - Date.now()) });
        return { pid, qmp };
      } catch (err) {
        if (!(err instanceof QmpTimeoutError) && Date.now() < deadline) {
          await delay(50);
          continue;
        }
        killQuietly(pid);
        throw new GuestStartError(vmId, `QMP did not answer: ${(err as Error).message}`);
      }
    }
    if (Date.now() >= deadline) {
      if (pid !== undefined) killQuietly(pid);
      throw new GuestStartError(vmId, `no QMP socket after ${timeoutMs} ms${await why()}`);
    }
    await delay(25);
  }
}

export function killQuietly(pid: number, signal: NodeJS.Signals = 'SIGKILL'): void {
  try {
    process.kill(pid, signal);
  } catch {
    // already gone
  }
}

/** Resolves once the process is gone (polled: it may not be our child), false after `timeoutMs`. */
export async function waitForExit(pid: number, timeoutMs: number): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (isProcessAlive(pid)) {
    if (Date.now() >= deadline) return false;
    await delay(20);
  }
  return true;
}
