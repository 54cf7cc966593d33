import cliProgress from 'cli-progress';
import type { cluster } from '@vmm/proto';
import { paint } from './format/colours.js';
import { percentSent, phaseName, progressLine } from './format/migrations.js';
import { formatBytes, formatCount, formatThroughput } from './format/units.js';
import type { Io } from './io.js';

/** Shows the progress of one or more followed migrations (one bar each, or log lines). */
export interface ProgressView {
  update(label: string, m: cluster.Migration): void;
  /** Removes the live display (bars stay on screen in their final state). */
  stop(): void;
}

/** Live bars on a terminal: phase, bar of pages sent, round, data, dirty pages left, throughput, throttle. */
function barView(stream: NodeJS.WriteStream): ProgressView {
  const multi = new cliProgress.MultiBar(
    {
      stream,
      format: `{label} {phase} ${paint.cyan('{bar}')} {percentage}% | round {round} | {sent} | dirty {dirty} | {throughput}{throttle}`,
      barsize: 24,
      hideCursor: true,
      clearOnComplete: false,
      fps: 10,
      autopadding: true,
    },
    cliProgress.Presets.shades_classic,
  );
  const bars = new Map<string, cliProgress.SingleBar>();
  return {
    update(label, m) {
      const payload = {
        label: paint.bold(label),
        phase: phaseName(m).padEnd(13),
        round: m.round,
        sent: formatBytes(m.bytesSent).padStart(9),
        dirty: `${formatCount(m.dirtyPagesRemaining)} pages`.padStart(11),
        throughput: formatThroughput(m.throughputBytesPerSec).padStart(11),
        throttle: m.throttlePercent > 0 ? paint.yellow(` | throttle ${Math.round(m.throttlePercent)}%`) : '',
      };
      const value = Math.round(percentSent(m));
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
