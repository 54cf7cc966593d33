/**
 * Looking up a record by the id a request names, the same way for VMs, nodes and migrations: an
 * empty id is INVALID_ARGUMENT naming the request field, a missing record is that kind's NOT_FOUND.
 */
import { InvalidArgumentError, type ControllerError } from '../errors.js';

/** The id, or INVALID_ARGUMENT naming `field` when it is empty. */
export function requireId(field: string, id: string): string {
  if (!id) throw new InvalidArgumentError(field, 'must not be empty');
  return id;
}

/** The record `get` finds for `id`; INVALID_ARGUMENT when the id is empty, `notFound(id)` when there is none. */
export async function requireFound<T>(
  field: string,
  id: string,
  get: (id: string) => Promise<T | undefined>,
  notFound: (id: string) => ControllerError,
): Promise<T> {
  const found = await get(requireId(field, id));
  if (!found) throw notFound(id);
  return found;
}
