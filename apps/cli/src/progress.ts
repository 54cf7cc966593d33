import cliProgress from 'cli-progress';
import type { cluster } from '@vmm/proto';
import { percentInSync, phaseName, progressLine } from './format/migrations.js';
import { formatBytes, formatCount, formatThroughput } from './format/units.js';
import type { Io } from './io.js';

/** Shows the progress of one or more followed migrations (one bar each, or log lines). */
export interface ProgressView {
  update(label: string, m: cluster.Migration): void;
  /** Removes the live display (bars stay on screen in their final state). */
  stop(): void;
}

interface BarPayload {
  label: string;
  /** Figures after the bar, most important first: dropped from the end when the line is too long. */
  parts: string[];
}

/** After the share of memory in sync: round, dirty pages left, throttle, data sent, throughput. */
function barParts(m: cluster.Migration): string[] {
  const parts = [`round ${m.round}`, `${formatCount(m.dirtyPagesRemaining)} dirty`];
  if (m.throttlePercent > 0) parts.push(`throttle ${Math.round(m.throttlePercent)}%`);
  parts.push(`${formatBytes(m.bytesSent)} sent`, formatThroughput(m.throughputBytesPerSec));
  return parts;
}

/**
 * Live bars on a terminal. cli-progress cuts lines at the terminal's width, so the figures that do
 * not fit are left out rather than cut in the middle; the bar keeps one width for the whole run.
 */
function barView(stream: NodeJS.WriteStream): ProgressView {
  const columns = stream.columns || 80;
  const barWidth = columns >= 120 ? 24 : columns >= 100 ? 16 : 10;
  const format: cliProgress.GenericFormatter = (options, params, payload: BarPayload) => {
    const percent = `${Math.round(params.progress * 100)}%`.padStart(4);
    const done = Math.round(params.progress * barWidth);
    // No colours on this line: cli-progress cuts lines by string length, escape codes included.
    const head = `${payload.label} ${'█'.repeat(done)}${'░'.repeat(barWidth - done)} ${percent} in sync`;
    const room = columns - 1;
    const parts = [...payload.parts];
    while (parts.length > 1 && `${head}  ${parts.join(' · ')}`.length > room) parts.pop();
    return `${head}  ${parts.join(' · ')}`;
  };
  const multi = new cliProgress.MultiBar({ stream, format, hideCursor: true, clearOnComplete: false, fps: 10 });
  const bars = new Map<string, cliProgress.SingleBar>();
  return {
    update(label, m) {
      const payload: BarPayload = { label: `${label} ${phaseName(m).padEnd(13)}`, parts: barParts(m) };
      // Floor: 100% only once nothing is left to send.
      const value = Math.floor(percentInSync(m));
      const bar = bars.get(label);
      if (bar) bar.update(value, payload);
      else bars.set(label, multi.create(100, value, payload));
    },
    stop() {
      multi.stop();
    },
  };
}

/** For pipes and logs: a line when the phase or round changes, and at most one a second otherwise. */
function lineView(io: Io, minIntervalMs = 1000): ProgressView {
  const seen = new Map<string, { key: string; atMs: number }>();
  return {
    update(label, m) {
      const key = `${m.phase}/${m.round}`;
      const prev = seen.get(label);
      const now = Date.now();
      if (prev && prev.key === key && now - prev.atMs < minIntervalMs) return;
      seen.set(label, { key, atMs: now });
      io.err(`${label}  ${progressLine(m)}\n`);
    },
    stop() {},
  };
}

export function createProgressView(io: Io): ProgressView {
  return io.progressStream ? barView(io.progressStream) : lineView(io);
}
