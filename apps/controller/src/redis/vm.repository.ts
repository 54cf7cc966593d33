/** VM records in Redis: reads, the paginated index, state changes. Placement lives in placement.repository.ts. */
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { cluster } from '@vmm/proto';
import type { VmRecord } from '../common/model.js';
import { RecordScript } from './lua-script.js';
import { SET_IF_EXISTS_LUA } from './lua/node.lua.js';
import { SET_VM_STATE_LUA } from './lua/placement.lua.js';
import { hashToVm } from './record-codec.js';
import type { RedisKeys } from './redis-keys.js';
import { REDIS, REDIS_KEYS } from './redis.provider.js';

const setVmState = new RecordScript('set-vm-state', SET_VM_STATE_LUA);
const setIfExists = new RecordScript('set-if-exists', SET_IF_EXISTS_LUA);

@Injectable()
export class VmRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
  ) {}

  async get(vmId: string): Promise<VmRecord | undefined> {
    return hashToVm(await this.redis.hgetall(this.keys.vm(vmId)));
  }

  async getMany(vmIds: readonly string[]): Promise<VmRecord[]> {
    if (vmIds.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of vmIds) pipeline.hgetall(this.keys.vm(id));
    const results = (await pipeline.exec()) ?? [];
    const vms: VmRecord[] = [];
    for (const [error, hash] of results) {
      if (error) throw error;
      const vm = hashToVm(hash as Record<string, string>);
      if (vm) vms.push(vm);
    }
    return vms;
  }

  async idByName(name: string): Promise<string | undefined> {
    return (await this.redis.hget(this.keys.vmNames(), name)) ?? undefined;
  }

  /**
   * Up to `limit` VMs after id `after` ('' = from the start), in id order (ids sort by creation time),
   * optionally only those on `nodeId`; `more` tells whether another page exists.
   */
  async listPage(after: string, limit: number, nodeId: string): Promise<{ vms: VmRecord[]; more: boolean }> {
    const index = nodeId ? this.keys.nodeVms(nodeId) : this.keys.vms();
    const ids = await this.redis.zrangebylex(index, after ? `(${after}` : '-', '+', 'LIMIT', 0, limit + 1);
    const more = ids.length > limit;
    return { vms: await this.getMany(more ? ids.slice(0, limit) : ids), more };
  }

  async idsOnNode(nodeId: string): Promise<string[]> {
    return this.redis.zrangebylex(this.keys.nodeVms(nodeId), '-', '+');
  }

  /** Compare-and-set of the state; false if the VM is gone or not in one of `expected`. */
  async setState(vmId: string, state: cluster.VmState, expected: readonly cluster.VmState[]): Promise<boolean> {
    return (await setVmState.run(this.redis, this.keys, [this.keys.vm(vmId)], [state, ...expected])) === 1;
  }

  /** Compare-and-set to FAILED with the reason; false if the VM is gone or not in one of `expected`. */
  async fail(vm: Pick<VmRecord, 'vmId'>, reason: string, expected: readonly cluster.VmState[]): Promise<boolean> {
    if (!(await this.setState(vm.vmId, 'VM_STATE_FAILED' as cluster.VmState, expected))) return false;
    await this.setFields(vm.vmId, { failureReason: reason });
    return true;
  }

  /** Sets fields of an existing VM; false if it is gone. */
  async setFields(vmId: string, fields: Record<string, string>): Promise<boolean> {
    return (await setIfExists.run(this.redis, this.keys, [this.keys.vm(vmId)], Object.entries(fields).flat())) === 1;
  }

  /** Node ids that hold at least one VM of the anti-affinity group. */
  async antiAffinityNodeIds(group: string): Promise<Set<string>> {
    if (!group) return new Set();
    const counts = await this.redis.hgetall(this.keys.antiAffinity(group));
    return new Set(Object.entries(counts).filter(([, n]) => Number(n) > 0).map(([id]) => id));
  }
}
