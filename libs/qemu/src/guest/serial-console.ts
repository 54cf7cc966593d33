import { open, type FileHandle } from 'node:fs/promises';

/**
 * The guest program's serial console (a file QEMU writes), read incrementally from where the last read
 * stopped. The program prints `vmm: ready ...` once its image is in memory, `vmm: writes=N uptime_ms=T`
 * every report period, and `vmm: error ...` when it cannot run.
 */
export interface ConsoleState {
  ready: boolean;
  /** The `vmm: ready` line's fields (image, pages, zero, duplicate, unique, fill_ms, ws_pages). */
  readyInfo: Record<string, string> | null;
  /** The last counter the guest printed, or null before its first report. */
  writesTotal: number | null;
  /** The guest's own clock at that report (CLOCK_MONOTONIC ms; it stops while QEMU is paused). */
  guestUptimeMs: number | null;
  /** Reports seen so far (each one proves the guest ran). */
  reports: number;
  error: string | null;
}

/** Bytes read at most per poll; a guest that floods its console is read over several polls. */
const MAX_READ_BYTES = 1024 * 1024;
const MAX_PARTIAL_LINE = 64 * 1024;

export class SerialConsole {
  private offset = 0;
  private partial = '';
  readonly state: ConsoleState = { ready: false, readyInfo: null, writesTotal: null, guestUptimeMs: null, reports: 0, error: null };

  constructor(private readonly file: string) {}

  /** Reads what the guest printed since the last poll and updates `state`. A missing file reads as empty. */
  async poll(): Promise<ConsoleState> {
    let fh: FileHandle;
    try {
      fh = await open(this.file, 'r');
    } catch {
      return this.state;
    }
    try {
      const buf = Buffer.alloc(MAX_READ_BYTES);
      const { bytesRead } = await fh.read(buf, 0, buf.length, this.offset);
      this.offset += bytesRead;
      this.consume(buf.toString('latin1', 0, bytesRead));
    } finally {
      await fh.close();
    }
    return this.state;
  }

  private consume(text: string): void {
    const lines = (this.partial + text).split('\n');
    this.partial = lines.pop() ?? '';
    if (this.partial.length > MAX_PARTIAL_LINE) this.partial = '';
    for (const raw of lines) this.onLine(raw.replace(/\r$/, ''));
  }

  private onLine(line: string): void {
    const at = line.indexOf('vmm: ');
    if (at === -1) return; // kernel messages and terminal escapes share the console
    const body = line.slice(at + 5);
    if (body.startsWith('writes=')) {
      const m = /^writes=(\d+) uptime_ms=(\d+)/.exec(body);
      if (!m) return;
      this.state.writesTotal = Number(m[1]);
      this.state.guestUptimeMs = Number(m[2]);
      this.state.reports++;
    } else if (body.startsWith('ready')) {
      this.state.ready = true;
      this.state.readyInfo = Object.fromEntries(
        body
          .slice(5)
          .trim()
          .split(/\s+/)
          .map((kv) => kv.split('=', 2) as [string, string])
          .filter((kv) => kv.length === 2),
      );
    } else if (body.startsWith('error')) {
      this.state.error = body.slice(5).trim();
    }
  }
}
