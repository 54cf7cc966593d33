/**
 * A count of data connections that have not presented their HELLO yet, with a limit: a listener takes
 * a slot per accepted connection and gives it back when the connection is handed over or closed, and
 * closes the connection at once when no slot is free. One budget per listener, and one shared by every
 * listener of the process (one agent), so that neither a listener nor the agent can be made to hold
 * more than a few unauthenticated connections.
 */
export class PendingConnectionBudget {
  private used = 0;

  constructor(readonly limit: number) {
    if (!Number.isInteger(limit) || limit < 1) throw new RangeError(`PendingConnectionBudget limit must be a whole number ≥ 1, got ${limit}`);
  }

  get inUse(): number {
    return this.used;
  }

  /** Takes a slot; false (and nothing taken) when all are in use. */
  tryTake(): boolean {
    if (this.used >= this.limit) return false;
    this.used++;
    return true;
  }

  give(): void {
    if (this.used > 0) this.used--;
  }
}
