import { fromProtoPhase, isFinal } from '@vmm/migration/phase';
import { cluster } from '@vmm/proto';
import { colourState, cross, paint, tick } from './colours.js';
import { renderBox, renderFields, renderTable } from './table.js';
import {
  formatAgo,
  formatBytes,
  formatCount,
  formatDuration,
  formatMib,
  formatPageRate,
  formatThroughput,
  PAGE_SIZE_BYTES,
  shortId,
  stripEnumPrefix,
} from './units.js';

export const phaseName = (m: cluster.Migration): string => stripEnumPrefix(m.phase, 'MIGRATION_PHASE_');

/** A final phase (the phase model's, @vmm/migration/phase): the migration no longer changes. */
export const isTerminal = (m: cluster.Migration): boolean => {
  const phase = fromProtoPhase(m.phase);
  return phase !== undefined && isFinal(phase);
};

export type DigestCheck = 'match' | 'mismatch' | 'unchecked';

/** The end-to-end memory check: both ends' digests present and equal. */
export function digestCheck(m: cluster.Migration): DigestCheck {
  if (!m.sourceDigest || !m.targetDigest) return 'unchecked';
  return m.sourceDigest === m.targetDigest ? 'match' : 'mismatch';
}

function digestCell(m: cluster.Migration): string {
  const check = digestCheck(m);
  return check === 'match' ? tick() : check === 'mismatch' ? cross() : paint.gray('—');
}

/** Share of the VM's pages sent so far, capped at 100% (later rounds resend dirty pages). */
export function percentSent(m: cluster.Migration): number {
  if (m.pagesTotal <= 0) return 0;
  return Math.min(100, (m.pagesSent / m.pagesTotal) * 100);
}

/**
 * Share of the VM's memory that is on the target with its current content: the pages sent in round 0
 * so far, then everything but the pages dirtied since they were sent. It climbs to 100% as pre-copy
 * converges, where "percent sent" would sit at 100% from round 1 on.
 */
export function percentInSync(m: cluster.Migration): number {
  if (m.phase === cluster.MigrationPhase.MIGRATION_PHASE_COMPLETED || m.phase === cluster.MigrationPhase.MIGRATION_PHASE_COMMITTING) return 100;
  if (m.pagesTotal <= 0) return 0;
  if (m.round === 0 && m.dirtyPagesRemaining === 0) return percentSent(m);
  return Math.max(0, Math.min(100, (1 - m.dirtyPagesRemaining / m.pagesTotal) * 100));
}

/** VM label for tables: its name when the caller knows it, else its short id. */
export type VmNames = ReadonlyMap<string, string>;

export function renderMigrationsTable(migrations: readonly cluster.Migration[], names: VmNames = new Map()): string {
  if (migrations.length === 0) return 'No migrations.\n';
  return renderTable(
    ['ID', 'VM', 'SOURCE', 'TARGET', 'PHASE', 'ROUND', 'SENT', 'DOWNTIME', 'TOTAL', 'DIGEST', 'REASON'],
    migrations.map((m) => {
      const done = isTerminal(m);
      return [
        shortId(m.migrationId),
        names.get(m.vmId) ?? shortId(m.vmId),
        m.sourceNodeId,
        m.targetNodeId || paint.gray('—'),
        colourState(phaseName(m)),
        String(m.round),
        formatBytes(m.bytesSent),
        done && m.downtimeMs > 0 ? formatDuration(m.downtimeMs) : paint.gray('—'),
        done ? formatDuration(m.totalTimeMs) : paint.gray('—'),
        digestCell(m),
        m.reason || '—',
      ];
    }),
  );
}

/** One line of progress, for logs and pipes where no bar can be drawn. */
export function progressLine(m: cluster.Migration): string {
  const parts = [
    `${phaseName(m).padEnd(13)}`,
    `round ${m.round}`,
    `in sync ${String(Math.floor(percentInSync(m))).padStart(3)}%`,
    `dirty ${formatCount(m.dirtyPagesRemaining)} pages`,
    `sent ${formatBytes(m.bytesSent)}`,
    formatThroughput(m.throughputBytesPerSec),
  ];
  if (m.throttlePercent > 0) parts.push(`throttle ${Math.round(m.throttlePercent)}%`);
  return parts.join('  ');
}

/** The policy the controller resolved (every field set); a field it left out is shown as missing, not guessed. */
function policyText(p: cluster.MigrationPolicy | undefined): string {
  if (!p) return '—';
  const bandwidth = p.maxBandwidthMibPerSec;
  const parts = [
    p.downtimeLimitMs === undefined ? 'downtime ?' : `downtime ≤ ${formatDuration(p.downtimeLimitMs)}`,
    bandwidth === undefined ? 'bandwidth ?' : bandwidth > 0 ? `bandwidth ≤ ${formatMib(bandwidth)}/s` : 'bandwidth unlimited',
  ];
  if (p.maxRounds !== undefined && p.maxRounds > 0) parts.push(`max ${p.maxRounds} rounds`);
  if (p.autoConverge) parts.push('auto-converge');
  if (p.xbzrle) parts.push(p.xbzrleCacheMib ? `xbzrle (${formatMib(p.xbzrleCacheMib)} cache)` : 'xbzrle');
  if (p.multifdChannels !== undefined && p.multifdChannels > 1) parts.push(`multifd ×${p.multifdChannels}`);
  if (p.completionTimeoutMs !== undefined && p.completionTimeoutMs > 0) parts.push(`timeout ${formatDuration(p.completionTimeoutMs)}`);
  return parts.join(', ');
}

export function renderMigrationDetails(m: cluster.Migration, vmName?: string, nowMs = Date.now()): string {
  return renderFields([
    ['Migration', m.migrationId],
    ['VM', vmName ? `${vmName} (${m.vmId})` : m.vmId],
    ['Route', `${m.sourceNodeId} → ${m.targetNodeId || '?'}`],
    ['Phase', colourState(phaseName(m))],
    ['Reason', m.reason || '—'],
    ['Round', String(m.round)],
    ['Pages', `${formatCount(m.pagesSent)} sent of ${formatCount(m.pagesTotal)} (${percentSent(m).toFixed(0)}%)`],
    ['Data sent', formatBytes(m.bytesSent)],
    ['Dirty left', `${formatCount(m.dirtyPagesRemaining)} pages`],
    ['Dirty rate', formatPageRate(m.dirtyRatePagesPerSec)],
    ['Throughput', formatThroughput(m.throughputBytesPerSec)],
    ['Expected downtime', formatDuration(m.expectedDowntimeMs)],
    ['Throttle', `${Math.round(m.throttlePercent)}%`],
    ['Policy', policyText(m.policy)],
    ['Started', m.createdAtMs ? formatAgo(m.createdAtMs, nowMs) : '—'],
    ...(m.error ? ([['Error', paint.red(m.error)]] as [string, string][]) : []),
  ]);
}

/**
 * Passes over memory, as QEMU counts dirty syncs: `round` is the 0-based index of the last pass, and
 * a completed migration's last pass is the stop-and-copy one.
 */
export function roundsText(m: cluster.Migration): string {
  if (m.phase === cluster.MigrationPhase.MIGRATION_PHASE_COMPLETED) {
    return `${m.round + 1} (${m.round} pre-copy + stop-and-copy)`;
  }
  return m.pagesSent > 0 || m.round > 0 ? `${m.round + 1} pre-copy` : '0';
}

/** The measured downtime beside its limit; over the limit is shown in yellow (a miss, not a failure). */
function downtimeText(m: cluster.Migration): string {
  const limit = m.policy?.downtimeLimitMs ?? 0;
  if (limit <= 0) return formatDuration(m.downtimeMs);
  const over = m.downtimeMs > limit;
  const text = `${formatDuration(m.downtimeMs)}  (limit ${formatDuration(limit)}${over ? ', exceeded' : ''})`;
  return over ? paint.yellow(text) : text;
}

export interface SummaryContext {
  vmName?: string;
  /** The VM's memory, for "sent / VM size"; without it the migration's page count stands in. */
  vmMemoryMib?: number;
}

/** The boxed outcome of a finished migration: what an operator checks after `migrate --follow`. */
export function renderSummary(m: cluster.Migration, ctx: SummaryContext = {}): string {
  const phase = phaseName(m);
  const check = digestCheck(m);
  const vmBytes = ctx.vmMemoryMib ? ctx.vmMemoryMib * 1024 * 1024 : m.pagesTotal * PAGE_SIZE_BYTES;
  const ratio = vmBytes > 0 ? ` = ${(m.bytesSent / vmBytes).toFixed(2)} × VM size (${formatBytes(vmBytes)})` : '';
  const outcome =
    phase === 'COMPLETED' && check === 'match'
      ? `${colourState(phase)} ${tick()}`
      : phase === 'COMPLETED'
        ? `${colourState(phase)} ${cross()} digest not verified`
        : `${colourState(phase)} ${cross()}${m.error ? `  ${m.error}` : ''}`;
  const digest =
    check === 'unchecked'
      ? paint.gray('not checked (the migration did not reach switch-over)')
      : `source ${m.sourceDigest} ${check === 'match' ? '==' : '!='} target ${m.targetDigest} ${check === 'match' ? tick() : cross()}`;
  const fields: [string, string][] = [
    ['Outcome', outcome],
    ['Route', `${m.sourceNodeId} → ${m.targetNodeId || '?'}`],
    ['Downtime', m.downtimeMs > 0 || phase === 'COMPLETED' ? downtimeText(m) : `none: the VM kept running on ${m.sourceNodeId}`],
    ['Total time', m.totalTimeMs > 0 ? formatDuration(m.totalTimeMs) : paint.gray('—')],
    ['Rounds', roundsText(m)],
    ['Data sent', `${formatBytes(m.bytesSent)}${ratio}`],
    ['Digest', digest],
  ];
  if (m.throttlePercent > 0) fields.splice(5, 0, ['Throttle', `${Math.round(m.throttlePercent)}% at the end`]);
  const who = ctx.vmName ?? shortId(m.vmId);
  return renderBox(`Migration ${shortId(m.migrationId)} of ${who}`, fields);
}
