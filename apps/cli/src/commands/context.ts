import type { ClusterApi } from '../client.js';
import type { Io } from '../io.js';

/** What every command gets: the API, where to write, and whether to write JSON for machines. */
export interface CommandContext {
  api: ClusterApi;
  io: Io;
  json: boolean;
}

/** Machine output: the decoded proto message (camelCase fields, every field, enums as strings). */
export function printJson(ctx: CommandContext, value: unknown): void {
  ctx.io.out(`${JSON.stringify(value, null, 2)}\n`);
}

/** One compact JSON object per line, for streams of updates (`--follow --json`). */
export function printJsonLine(ctx: CommandContext, value: unknown): void {
  ctx.io.out(`${JSON.stringify(value)}\n`);
}

/** Runs fn with a signal that fires on Ctrl-C, so that followers can stop and report cleanly. */
export async function interruptible<T>(ctx: CommandContext, fn: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const controller = new AbortController();
  const remove = ctx.io.onInterrupt(() => controller.abort());
  try {
    return await fn(controller.signal);
  } finally {
    remove();
  }
}
