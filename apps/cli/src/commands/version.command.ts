import { createRequire } from 'node:module';
import { status } from '@grpc/grpc-js';
import { isServiceError } from '../errors.js';
import { type CommandContext, printJson } from './context.js';

/** apps/cli/package.json's version (the same relative path from src/commands and dist/commands). */
export const CLI_VERSION: string = (createRequire(import.meta.url)('../../package.json') as { version: string }).version;

/** `vmctl version`: this CLI's release and the controller's (GetVersion), with the features it serves. */
export async function versionCommand(ctx: CommandContext): Promise<void> {
  let server;
  try {
    server = await ctx.api.getVersion();
  } catch (error) {
    // A controller from before GetVersion: say so rather than fail.
    if (!isServiceError(error) || error.code !== status.UNIMPLEMENTED) throw error;
  }
  if (ctx.json) return printJson(ctx, { client: { version: CLI_VERSION }, server: server ?? null });
  ctx.io.out(`vmctl       ${CLI_VERSION}\n`);
  ctx.io.out(server ? `controller  ${server.version} (API ${server.apiVersion})\nfeatures    ${server.features.join(', ')}\n` : 'controller  (too old to say: no GetVersion)\n');
  const d = server?.defaults;
  if (d) {
    const bandwidth = Number(d.maxBandwidthMibPerSec) === 0 ? 'unlimited' : `${d.maxBandwidthMibPerSec} MiB/s`;
    ctx.io.out(
      `defaults    downtime ${d.downtimeLimitMs} ms, bandwidth ${bandwidth}, ${d.maxRounds} rounds, auto-converge ${d.autoConverge ? 'on' : 'off'}, ` +
        `xbzrle ${d.xbzrle ? `on (${d.xbzrleCacheMib} MiB cache)` : 'off'}, multifd ${d.multifdChannels || 1}, completion ${Number(d.completionTimeoutPerGibMs) / 1000} s per GiB\n` +
        `retention   ${Math.round(Number(d.migrationRetentionMs) / 3_600_000)} h of finished migrations, ${d.watchHistory} changes of watch history\n`,
    );
  }
}
