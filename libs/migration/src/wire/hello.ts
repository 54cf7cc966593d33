/**
 * HELLO's payload, decoded strictly: valid UTF-8, a JSON object, every field of the right type and
 * within bounds, before anything reads it. A HELLO arrives before the peer proved anything (the token
 * is inside it), so nothing of it may reach an error message, a log line or a frame unbounded: a
 * 64 KiB migration id once made the ERROR frame answering it too large to encode, inside a socket
 * handler. Unknown fields are ignored (a newer sender may add some, STREAM.md).
 */
import { ProtocolError } from '../errors.js';
import { MAX_COMPLETION_TIMEOUT_MS } from '../policy.js';
import type { HelloPayload } from './frame.js';

/** The agents' id rule (migration and VM ids): 1-128 letters, digits, ".", "_", ":" or "-". */
export const MIGRATION_ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
/** Image names (docs/api.md, version 2): 1-128 characters of [a-z0-9._:/-], starting with a letter or digit. */
export const IMAGE_NAME_PATTERN = /^[a-z0-9][a-z0-9._:/-]{0,127}$/;
/** The one-time token's longest form (the agents accept 8-256 characters). */
export const MAX_TOKEN_CHARS = 256;
/** GuestMemory's page count limit. */
const MAX_PAGE_COUNT = 0x7fffffff;
/** The emulator's limits: 8 TiB of memory, 4096 vCPUs. */
const MAX_MEMORY_MIB = 8 * 1024 * 1024;
const MAX_VCPUS = 4096;
const MAX_VERSION = 0xffff;

const utf8 = new TextDecoder('utf-8', { fatal: true });

function bad(field: string, rule: string): ProtocolError {
  return new ProtocolError(`HELLO ${field}: ${rule}`);
}

function integer(o: Record<string, unknown>, field: string, min: number, max: number, optional = false): number | undefined {
  const v = o[field];
  if (v === undefined && optional) return undefined;
  if (typeof v !== 'number' || !Number.isInteger(v) || v < min || v > max) throw bad(field, `must be a whole number in ${min}..${max}`);
  return v;
}

function text(o: Record<string, unknown>, field: string, pattern: RegExp | null, maxChars: number, rule: string): string {
  const v = o[field];
  if (typeof v !== 'string' || v.length === 0 || v.length > maxChars || (pattern !== null && !pattern.test(v))) throw bad(field, rule);
  return v;
}

/**
 * @throws ProtocolError naming the first bad field (invalid UTF-8, not JSON, a missing field, a value
 *   out of bounds); its message never quotes more than a few characters of the payload
 */
export function decodeHello(payload: Uint8Array): HelloPayload {
  let parsed: unknown;
  try {
    parsed = JSON.parse(utf8.decode(payload));
  } catch {
    throw new ProtocolError('HELLO: payload is not valid UTF-8 JSON');
  }
  if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ProtocolError('HELLO: payload is not a JSON object');
  const o = parsed as Record<string, unknown>;
  const version = integer(o, 'version', 0, MAX_VERSION)!;
  const maxVersion = integer(o, 'maxVersion', 0, MAX_VERSION, true);
  const migrationId = text(o, 'migrationId', MIGRATION_ID_PATTERN, 128, 'must be 1-128 letters, digits, ".", "_", ":" or "-"');
  const token = text(o, 'token', null, MAX_TOKEN_CHARS, `must be a string of 1-${MAX_TOKEN_CHARS} characters`);
  const pageCount = integer(o, 'pageCount', 1, MAX_PAGE_COUNT)!;
  const memoryMib = integer(o, 'memoryMib', 1, MAX_MEMORY_MIB)!;
  const image = text(o, 'image', IMAGE_NAME_PATTERN, 128, 'must be 1-128 characters of a-z, 0-9, ".", "_", ":", "/" or "-"');
  const vcpus = integer(o, 'vcpus', 1, MAX_VCPUS)!;
  const residentPages = integer(o, 'residentPages', 0, pageCount, true);
  const completionTimeoutMs = integer(o, 'completionTimeoutMs', 0, MAX_COMPLETION_TIMEOUT_MS, true);
  const hello: HelloPayload = { version, migrationId, token, pageCount, memoryMib, image, vcpus };
  if (maxVersion !== undefined) hello.maxVersion = maxVersion;
  if (residentPages !== undefined) hello.residentPages = residentPages;
  if (completionTimeoutMs !== undefined) hello.completionTimeoutMs = completionTimeoutMs;
  return hello;
}
