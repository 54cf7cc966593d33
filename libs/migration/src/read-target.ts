/**
 * Where the next read of an accepted data connection lands: the transport asks before every read, the
 * receiver answers (inside a PAGE_RUN: straight into the guest frames). Kept apart from both so that
 * neither imports the other.
 */
import { Socket } from 'node:net';

/** Given the connection's own read buffer, the view to read into instead, or null for that buffer. */
export type ReadTarget = (buffer: Uint8Array) => Uint8Array | null;

const targets = new WeakMap<Socket, ReadTarget>();

/**
 * Lets `target` choose where each next read of `connection` lands; `null` removes it. Only a connection
 * that listenForIncoming re-wrapped asks; any other ignores it.
 */
export function setReadTarget(connection: unknown, target: ReadTarget | null): void {
  if (!(connection instanceof Socket)) return;
  if (target === null) targets.delete(connection);
  else targets.set(connection, target);
}

export function readTargetOf(connection: Socket): ReadTarget | undefined {
  return targets.get(connection);
}
