import { ClusterStoppedError, ProcessNotRunningError, ProcessRunningError, ReadyTimeoutError } from './errors.js';
import { transition, type ProcessState } from './process-state.js';
import type { ExitStatus, ManagedProcess } from './processes.js';
import { DEFAULT_RESTART_BACKOFF, failuresInARow, restartDelayMs, type RestartBackoff } from './restart-backoff.js';

/** What a launcher prints about a process that died on its own: one event per death. */
export type ProcessEvent =
  /** Not supervised: it stays down; the rest of the cluster goes on. */
  | { type: 'died'; name: string; pid: number; status: ExitStatus }
  /** Supervised: started again, same command and environment. */
  | { type: 'restarted'; name: string; oldPid: number; status: ExitStatus; pid: number; restarts: number };

export function describeExit(status: ExitStatus): string {
  return `code ${status.code}, signal ${status.signal}`;
}

/** The one line a launcher prints for an event. */
export function describeProcessEvent(event: ProcessEvent): string {
  if (event.type === 'died') {
    return `${event.name} (pid ${event.pid}) died (${describeExit(event.status)}); the rest of the cluster keeps running`;
  }
  return (
    `restarted ${event.name}: pid ${event.oldPid} exited (${describeExit(event.status)}), ` +
    `new pid ${event.pid} (restart ${event.restarts})`
  );
}

export interface SupervisedProcessOptions {
  /** `redis`, `controller`, `node-1`…: in events and errors. */
  name: string;
  /** Starts the process; called again, unchanged, for every restart (same ports, environment, data). */
  spawn: () => ManagedProcess;
  /** Resolves once the process serves; rejects when it never will (it died, or a timeout). */
  ready: (process: ManagedProcess) => Promise<void>;
  /** Restart it when it dies on its own (after it was ready once since start()). */
  supervise: boolean;
  backoff?: RestartBackoff;
  onEvent?: (event: ProcessEvent) => void;
}

export interface Restarted {
  pid: number;
  restarts: number;
}

/**
 * One process of the cluster across its restarts: what a service manager keeps per unit. A death
 * before the process was first ready is start()'s error, not something to restart.
 */
export class SupervisedProcess {
  private stateValue: ProcessState = 'stopped';
  private current: ManagedProcess | undefined;
  /** pid of the current process once its ready() resolved. */
  private readyPid: number | undefined;
  private restartCount = 0;
  private failures = 0;
  private startedAtMs = 0;
  /** Set once the process was ready after start(): from then on its deaths are deaths, not start errors. */
  private armed = false;
  /** The cluster is shutting down: no restarts and no death reports any more. */
  private retired = false;
  private timer: NodeJS.Timeout | undefined;
  private readonly changeListeners = new Set<() => void>();
  private readonly backoff: RestartBackoff;

  constructor(private readonly options: SupervisedProcessOptions) {
    this.backoff = options.backoff ?? DEFAULT_RESTART_BACKOFF;
  }

  get name(): string {
    return this.options.name;
  }
  get state(): ProcessState {
    return this.stateValue;
  }
  get supervised(): boolean {
    return this.options.supervise;
  }
  /** The current (or last) child process. */
  get process(): ManagedProcess | undefined {
    return this.current;
  }
  /** pid of the current child while it runs. */
  get pid(): number | undefined {
    return this.current?.running ? this.current.pid : undefined;
  }
  get running(): boolean {
    return this.current?.running ?? false;
  }
  /** Automatic restarts so far (explicit start() calls do not count). */
  get restarts(): number {
    return this.restartCount;
  }

  /** Starts the process (from stopped or dead) and resolves once it is ready. */
  async start(): Promise<void> {
    if (this.retired) throw new ClusterStoppedError(this.name);
    if (this.stateValue !== 'stopped' && this.stateValue !== 'dead') throw new ProcessRunningError(this.name, this.stateValue);
    this.clearTimer();
    this.armed = false;
    this.failures = 0;
    const child = this.launch();
    await this.options.ready(child);
    if (this.current !== child || !child.running) throw new ProcessNotRunningError(this.name, this.stateValue);
    this.armed = true;
    this.readyPid = child.pid;
    this.notify();
  }

  /** Sends `signal` to the current child's pid (only ours); returns that pid. */
  signal(signal: NodeJS.Signals): number {
    const child = this.current;
    if (this.stateValue !== 'running' || !child?.running) throw new ProcessNotRunningError(this.name, this.stateValue);
    child.signal(signal);
    return child.pid;
  }

  /** Stops it on purpose (SIGTERM, SIGKILL after `timeoutMs`): it is not restarted. */
  async stop(timeoutMs?: number): Promise<void> {
    this.clearTimer();
    const child = this.current;
    switch (this.stateValue) {
      case 'running':
        this.setState('stopping');
        await child!.stop(timeoutMs);
        // onExit ran first (it was chained on `exited` before stop()); this covers nothing else.
        if (this.state === 'stopping') this.setState('stopped');
        return;
      case 'stopping':
        await child!.exited;
        return;
      case 'backoff':
      case 'dead':
        this.setState('stopped');
        return;
      case 'stopped':
        return;
    }
  }

  /** No more restarts or death reports: the cluster is shutting down (then stop() each, in order). */
  retire(): void {
    this.retired = true;
    this.clearTimer();
    if (this.stateValue === 'backoff') this.setState('dead');
  }

  /**
   * Resolves once an automatic restart after the `after`-th one (default: the count now) has happened
   * and the new process is ready; rejects with READY_TIMEOUT after `timeoutMs`.
   */
  async waitForRestart(options: { after?: number; timeoutMs?: number } = {}): Promise<Restarted> {
    const after = options.after ?? this.restartCount;
    const timeoutMs = options.timeoutMs ?? 30_000;
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const child = this.current;
      if (this.restartCount > after && child?.running && this.readyPid === child.pid) {
        return { pid: child.pid, restarts: this.restartCount };
      }
      const left = deadline - Date.now();
      if (left <= 0 || !(await this.nextChange(left))) {
        throw new ReadyTimeoutError(`restart ${after + 1} of ${this.name}`, timeoutMs, `${this.stateValue}, ${this.restartCount} restarts`);
      }
    }
  }

  private launch(): ManagedProcess {
    this.setState('running');
    const child = this.options.spawn();
    this.current = child;
    this.readyPid = undefined;
    this.startedAtMs = Date.now();
    void child.exited.then((status) => this.onExit(child, status));
    this.notify();
    return child;
  }

  private onExit(child: ManagedProcess, status: ExitStatus): void {
    if (child !== this.current) return;
    if (this.stateValue === 'stopping') {
      this.setState('stopped');
    } else if (this.stateValue === 'running') {
      this.failures = failuresInARow(this.failures, Date.now() - this.startedAtMs, this.backoff);
      if (this.options.supervise && this.armed && !this.retired) {
        this.setState('backoff');
        this.timer = setTimeout(() => this.restart(child.pid, status), restartDelayMs(this.failures, this.backoff));
      } else {
        this.setState('dead');
        // Reported after a grace: a Ctrl-C in a terminal reaches the children too, and the launcher's
        // own handler (which retires every process) must get to run before their exits count as deaths.
        if (this.armed && !this.retired) this.timer = setTimeout(() => this.reportDeath(child, status), this.backoff.initialMs);
      }
    }
    this.notify();
  }

  private reportDeath(child: ManagedProcess, status: ExitStatus): void {
    this.timer = undefined;
    if (this.retired || this.current !== child || this.stateValue !== 'dead') return;
    this.options.onEvent?.({ type: 'died', name: this.name, pid: child.pid, status });
  }

  private restart(oldPid: number, status: ExitStatus): void {
    this.timer = undefined;
    if (this.retired || this.stateValue !== 'backoff') return;
    const child = this.launch();
    this.restartCount += 1;
    this.options.onEvent?.({ type: 'restarted', name: this.name, oldPid, status, pid: child.pid, restarts: this.restartCount });
    this.notify();
    this.options.ready(child).then(
      () => {
        if (this.current === child && child.running) {
          this.readyPid = child.pid;
          this.notify();
        }
      },
      // It died before it was ready (onExit schedules the next try) or never became ready: a
      // waitForRestart() caller sees that as its timeout.
      () => {},
    );
  }

  private setState(next: ProcessState): void {
    this.stateValue = transition(this.name, this.stateValue, next);
  }

  private clearTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }

  private notify(): void {
    for (const listener of [...this.changeListeners]) listener();
  }

  /** True on the next change of this process, false when `timeoutMs` passed first. */
  private nextChange(timeoutMs: number): Promise<boolean> {
    return new Promise((resolve) => {
      const done = (changed: boolean): void => {
        clearTimeout(timer);
        this.changeListeners.delete(onChange);
        resolve(changed);
      };
      const onChange = (): void => done(true);
      const timer = setTimeout(() => done(false), timeoutMs);
      this.changeListeners.add(onChange);
    });
  }
}
