import { describe, expect, it } from 'vitest';
import { InvalidArgumentError, VmNotFoundError } from '../errors.js';
import { requireFound, requireId } from './require-found.js';

const records = new Map([['vm-1', { vmId: 'vm-1' }]]);
const get = async (id: string) => records.get(id);
const notFound = (id: string) => new VmNotFoundError(id);

describe('requireFound', () => {
  it('returns the record', async () => {
    await expect(requireFound('vm_id', 'vm-1', get, notFound)).resolves.toEqual({ vmId: 'vm-1' });
  });

  it('an empty id is INVALID_ARGUMENT naming the field, without a lookup', async () => {
    let looked = false;
    const err = await requireFound('vm_id', '', async () => ((looked = true), undefined), notFound).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(InvalidArgumentError);
    expect(String((err as Error).message)).toMatch(/vm_id/);
    expect(looked).toBe(false);
    expect(() => requireId('node_id', '')).toThrow(/node_id/);
  });

  it('a missing record is the kind’s NOT_FOUND', async () => {
    await expect(requireFound('vm_id', 'vm-2', get, notFound)).rejects.toBeInstanceOf(VmNotFoundError);
  });
});
