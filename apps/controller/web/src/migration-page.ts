/**
 * A migration drawn while it runs, after the figures of Clark et al. (NSDI 2005): one point per
 * pre-copy round of the pages sent in that round and the dirty pages left after it, the throughput and
 * the auto-converge throttle, and the downtime the sender expects against the policy's limit; when it
 * ends, the summary with the digest check. Fed by WatchMigration (the backend's migration events).
 */
import uPlot from 'uplot';
import 'uplot/dist/uPlot.min.css';
import type { Migration } from './api.js';
import { FINAL, PAGE_BYTES, bytes, h, short } from './dom.js';

interface RoundPoint {
  round: number;
  /** Cumulative pages sent when the round's progress was reported. */
  pagesSentTotal: number;
  dirtyLeft: number;
  throughputMibPerSec: number;
  throttlePercent: number;
  expectedDowntimeMs: number;
}

const WIDTH = 560;
const HEIGHT = 220;

function chart(title: string, series: uPlot.Series[], axes: uPlot.Axis[], scales: uPlot.Scales, target: HTMLElement): uPlot {
  return new uPlot({
    title, width: WIDTH, height: HEIGHT, scales: { x: { time: false }, ...scales },
    series: [{ label: 'round' }, ...series],
    axes: [{ label: 'round' }, ...axes],
    legend: { live: true },
  }, [[]], target);
}

export class MigrationPage {
  readonly el: HTMLElement;
  private readonly points = new Map<number, RoundPoint>();
  private readonly header = h('div', { class: 'mig-header' });
  private readonly summary = h('div', { class: 'summary', hidden: true });
  private readonly chartsEl = h('div', { class: 'charts', 'data-points': 0 });
  private readonly charts: uPlot[];
  private last: Migration | undefined;

  constructor(readonly migrationId: string, private readonly onCancel: (id: string) => void) {
    const pages = h('div', { class: 'chart', 'data-chart': 'pages' });
    const rate = h('div', { class: 'chart', 'data-chart': 'rate' });
    const downtime = h('div', { class: 'chart', 'data-chart': 'downtime' });
    this.chartsEl.append(pages, rate, downtime);
    this.el = h('div', { class: 'migration-page', 'data-migration-page': migrationId },
      h('p', {}, h('a', { href: '#/' }, '← cluster')), this.header, this.chartsEl, this.summary);
    const pts = { points: { show: true, size: 6 } };
    this.charts = [
      chart('Pages per round', [
        { label: 'sent in round', stroke: '#2563eb', width: 2, ...pts, scale: 'pages' },
        { label: 'dirty left', stroke: '#dc2626', width: 2, ...pts, scale: 'pages' },
      ], [{ scale: 'pages', label: 'pages', size: 70 }], {}, pages),
      chart('Throughput and throttle', [
        { label: 'throughput MiB/s', stroke: '#059669', width: 2, ...pts, scale: 'mib' },
        { label: 'throttle %', stroke: '#d97706', width: 2, ...pts, scale: 'pct' },
      ], [{ scale: 'mib', label: 'MiB/s', size: 60 }, { scale: 'pct', side: 1, label: '%', grid: { show: false } }], { pct: { range: [0, 100] } }, rate),
      chart('Downtime: expected against the limit', [
        { label: 'expected ms', stroke: '#7c3aed', width: 2, ...pts, scale: 'ms' },
        { label: 'limit ms', stroke: '#6b7280', width: 1, dash: [6, 4], scale: 'ms' },
      ], [{ scale: 'ms', label: 'ms', size: 60 }], {}, downtime),
    ];
  }

  /** Round numbers with a point, in order (what the charts show on x). */
  rounds(): number[] {
    return [...this.points.keys()].sort((a, b) => a - b);
  }

  update(m: Migration): void {
    this.last = m;
    const phase = short(m.phase);
    // Points are the sender's rounds (pre-copy, then the paused pass); a final record zeroes the rates.
    if (m.round > 0 && (phase === 'PRECOPY' || phase === 'STOP_AND_COPY')) {
      this.points.set(m.round, {
        round: m.round, pagesSentTotal: m.pagesSent, dirtyLeft: m.dirtyPagesRemaining,
        throughputMibPerSec: m.throughputBytesPerSec / 2 ** 20, throttlePercent: m.throttlePercent, expectedDowntimeMs: m.expectedDowntimeMs,
      });
      this.redraw(m);
    }
    this.drawHeader(m);
    if (FINAL.has(phase)) this.drawSummary(m);
  }

  private redraw(m: Migration): void {
    const rounds = this.rounds();
    const pts = rounds.map((r) => this.points.get(r)!);
    const sentInRound = pts.map((p, i) => p.pagesSentTotal - (i > 0 ? pts[i - 1]!.pagesSentTotal : 0));
    const limit = m.policy?.downtimeLimitMs ?? 0;
    this.charts[0]!.setData([rounds, sentInRound, pts.map((p) => p.dirtyLeft)]);
    this.charts[1]!.setData([rounds, pts.map((p) => p.throughputMibPerSec), pts.map((p) => p.throttlePercent)]);
    this.charts[2]!.setData([rounds, pts.map((p) => p.expectedDowntimeMs), pts.map(() => limit)]);
    this.chartsEl.setAttribute('data-points', String(rounds.length));
    this.chartsEl.setAttribute('data-rounds', rounds.join(','));
  }

  private drawHeader(m: Migration): void {
    const phase = short(m.phase);
    const pct = m.pagesTotal > 0 ? Math.min(100, (m.pagesSent / m.pagesTotal) * 100) : 0;
    this.header.replaceChildren(
      h('h2', {}, 'Migration ', h('span', { class: 'mono' }, m.migrationId)),
      h('div', { class: 'mig-facts' },
        h('span', { class: `badge phase-${phase.toLowerCase()}`, 'data-phase': phase }, phase),
        h('span', {}, `VM ${m.vmId}`),
        h('span', {}, `${m.sourceNodeId} → ${m.targetNodeId || '?'}`),
        h('span', {}, `round ${m.round}`),
        h('span', {}, `${bytes(m.bytesSent)} sent (${pct.toFixed(0)}% of pages)`),
        h('span', {}, `dirty ${bytes(m.dirtyRatePagesPerSec * PAGE_BYTES)}/s`),
        h('span', {}, `reason ${m.reason}`),
        FINAL.has(phase) ? '' : h('button', { class: 'action', 'data-action': 'cancel', onclick: () => this.onCancel(m.migrationId) }, 'Cancel')));
  }

  private drawSummary(m: Migration): void {
    const phase = short(m.phase);
    const limit = m.policy?.downtimeLimitMs ?? 0;
    const lastRound = this.points.get(this.rounds().at(-1) ?? -1);
    const digestsMatch = m.sourceDigest !== '' && m.sourceDigest === m.targetDigest;
    const sizeBytes = m.pagesTotal * PAGE_BYTES;
    const row = (k: string, v: string | HTMLElement) => h('tr', {}, h('th', {}, k), h('td', {}, v));
    this.summary.hidden = false;
    this.summary.setAttribute('data-final', phase);
    this.summary.replaceChildren(
      h('h3', {}, 'Summary'),
      h('table', {},
        row('outcome', phase + (m.errorReason ? ` (${m.errorReason}: ${m.error})` : '')),
        row('rounds', String(m.round)),
        row('total time', `${(m.totalTimeMs / 1000).toFixed(2)} s`),
        row('downtime', `${m.downtimeMs.toFixed(1)} ms (limit ${limit} ms, expected ${(lastRound?.expectedDowntimeMs ?? m.expectedDowntimeMs).toFixed(1)} ms at the last round)`),
        row('data sent', `${bytes(m.bytesSent)}, ${sizeBytes > 0 ? (m.bytesSent / sizeBytes).toFixed(2) : '?'}× the VM's memory`),
        row('digest check', m.sourceDigest || m.targetDigest
          ? h('span', { class: digestsMatch ? 'ok' : 'bad', 'data-digest': digestsMatch ? 'match' : 'mismatch' },
            `${digestsMatch ? '✓ source and target memory match' : '✗ source and target differ'} (${m.sourceDigest.slice(0, 16)}… / ${m.targetDigest.slice(0, 16)}…)`)
          : 'not computed')));
  }

  get migration(): Migration | undefined {
    return this.last;
  }
}
