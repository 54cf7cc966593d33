import { stringify as toYaml } from 'yaml';
import { toProtoJson } from '../format/proto-json.js';
import type { ClusterApi } from '../client.js';
import type { Io } from '../io.js';

/** `-o`: tables for people (`wide` as `table` where a command has no wider one), or machine output. */
export const OUTPUT_FORMATS = ['table', 'wide', 'json', 'yaml', 'name'] as const;
export type OutputFormat = (typeof OUTPUT_FORMATS)[number];

/** What every command gets: the API, where to write, and whether to write machine output (json/yaml/name). */
export interface CommandContext {
  api: ClusterApi;
  io: Io;
  json: boolean;
  output?: OutputFormat;
}

/** `kind/id` of each object a response holds (`-o name`, as kubectl's): VMs, nodes, migrations, images. */
export function namesOf(value: unknown): string[] {
  const one = (o: Record<string, unknown>): string | undefined => {
    if (typeof o.migrationId === 'string' && o.migrationId) return `migration/${o.migrationId}`;
    if (typeof o.vmId === 'string' && o.vmId) return `vm/${o.vmId}`;
    if (typeof o.nodeId === 'string' && o.nodeId) return `node/${o.nodeId}`;
    if (typeof o.name === 'string' && typeof o.sizeMib !== 'undefined') return `image/${o.name}`;
    return undefined;
  };
  if (value === null || typeof value !== 'object') return [];
  const o = value as Record<string, unknown>;
  for (const key of ['vms', 'nodes', 'migrations', 'images']) {
    if (Array.isArray(o[key])) return (o[key] as Record<string, unknown>[]).map(one).filter((n): n is string => n !== undefined);
  }
  const own = one(o);
  return own ? [own] : [];
}

/** Machine output: an API message in the proto3 JSON mapping (as grpcurl prints it: int64 as strings), as JSON, YAML or names. */
export function printJson(ctx: CommandContext, value: unknown): void {
  if (ctx.output === 'yaml') return void ctx.io.out(toYaml(toProtoJson(value)));
  if (ctx.output === 'name') return void ctx.io.out(namesOf(value).map((n) => `${n}\n`).join(''));
  ctx.io.out(`${JSON.stringify(toProtoJson(value), null, 2)}\n`);
}

/** One compact JSON object per line, for streams of updates (`--follow --json`). */
export function printJsonLine(ctx: CommandContext, value: unknown): void {
  ctx.io.out(`${JSON.stringify(toProtoJson(value))}\n`);
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
