/** Atomic placement: reserve a node's room and record a VM in one step, and release both. */
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { VmRecord } from '../common/model.js';
import { RecordScript } from './lua-script.js';
import { MOVE_FOR_RESTART_LUA, RELEASE_VM_LUA, RESERVE_VM_LUA } from './lua/placement.lua.js';
import { vmToHash } from './record-codec.js';
import type { RedisKeys } from './redis-keys.js';
import { REDIS, REDIS_KEYS } from './redis.provider.js';
import type { AdmissionRefusal } from './lua/shared.lua.js';

export type ReserveOutcome =
  | 'OK'
  | 'NO_NODE'
  | 'NAME_TAKEN'
  | 'VM_EXISTS'
  | AdmissionRefusal;

const reserveVm = new RecordScript('reserve-vm', RESERVE_VM_LUA);
const releaseVm = new RecordScript('release-vm', RELEASE_VM_LUA);
const moveForRestart = new RecordScript('move-for-restart', MOVE_FOR_RESTART_LUA);

export type RestartMoveOutcome = { outcome: 'OK'; fencingEpoch: number } | { outcome: Exclude<ReserveOutcome, 'OK' | 'NAME_TAKEN' | 'VM_EXISTS'> | 'CHANGED' | 'NOT_SILENT' };

@Injectable()
export class PlacementRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
  ) {}

  /**
   * Checks the node (ready, schedulable, room within its ratios, anti-affinity) and the name, then
   * records the VM on `vm.nodeId` with its allocation, indexes and name, all atomically.
   * `adopt` skips the node checks: for a VM an agent already runs (reconcile at registration).
   */
  async reserve(vm: VmRecord, nowMs: number, staleAfterMs: number, adopt = false): Promise<ReserveOutcome> {
    const k = this.keys;
    const keys = [
      k.node(vm.nodeId),
      k.vmNames(),
      this.groupKey(vm.antiAffinityGroup),
      k.vm(vm.vmId),
      k.vms(),
      k.nodeVms(vm.nodeId),
      k.nodeImages(vm.nodeId),
    ];
    const args = {
      vmId: vm.vmId,
      name: vm.name,
      vcpus: vm.vcpus,
      memoryMib: vm.memoryMib,
      group: vm.antiAffinityGroup,
      nodeId: vm.nodeId,
      nowMs,
      staleAfterMs,
      adopt,
      fields: vmToHash(vm),
    };
    return (await reserveVm.runJson(this.redis, this.keys, keys, args)) as ReserveOutcome;
  }

  /** Removes the VM and gives back its allocation, group membership, name and index entries. Idempotent. */
  async release(vmId: string): Promise<boolean> {
    const k = this.keys;
    for (;;) {
      const [nodeId, group] = await this.redis.hmget(k.vm(vmId), 'nodeId', 'antiAffinityGroup');
      const keys = [k.vm(vmId), k.vmNames(), k.vms(), k.node(nodeId ?? ''), k.nodeVms(nodeId ?? ''), k.nodeImages(nodeId ?? ''), this.groupKey(group ?? '')];
      const result = Number(await releaseVm.runJson(this.redis, this.keys, keys, { vmId, nodeId: nodeId ?? '', group: group ?? '' }));
      if (result !== -1) return result === 1;
      // Moved between the read and the script (a migration committed): read again.
    }
  }

  /** The group's anti-affinity hash; without a group a key the scripts never write. */
  private groupKey(group: string): string {
    return group ? this.keys.antiAffinity(group) : this.keys.vmNames();
  }

  /** Moves a lost VM to `newNodeId` under a new epoch, PENDING (see MOVE_FOR_RESTART_LUA). */
  async moveForRestart(
    vm: Pick<VmRecord, 'vmId' | 'nodeId' | 'fencingEpoch' | 'antiAffinityGroup'>,
    newNodeId: string,
    opts: { from: readonly string[]; nowMs: number; staleAfterMs: number; silentBeforeMs: number },
  ): Promise<RestartMoveOutcome> {
    const k = this.keys;
    const keys = [
      k.vm(vm.vmId),
      k.node(vm.nodeId),
      k.node(newNodeId),
      k.nodeVms(vm.nodeId),
      k.nodeVms(newNodeId),
      k.nodeImages(vm.nodeId),
      k.nodeImages(newNodeId),
      this.groupKey(vm.antiAffinityGroup),
    ];
    const args = { expectedNodeId: vm.nodeId, expectedEpoch: vm.fencingEpoch, from: opts.from, newNodeId, nowMs: opts.nowMs, staleAfterMs: opts.staleAfterMs, silentBeforeMs: opts.silentBeforeMs };
    const [outcome, epoch] = (await moveForRestart.runJson(this.redis, this.keys, keys, args)) as [string, number?];
    if (outcome === 'OK') return { outcome: 'OK', fencingEpoch: Number(epoch) };
    return { outcome: outcome as Exclude<RestartMoveOutcome['outcome'], 'OK'> } as RestartMoveOutcome;
  }
}
