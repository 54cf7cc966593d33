/** Node records in Redis: registration, reports, cordon flags, readiness transitions. */
import { Inject, Injectable } from '@nestjs/common';
import type { Redis } from 'ioredis';
import type { cluster } from '@vmm/proto';
import type { NodeRecord, VmMeasured } from '../common/model.js';
import { RecordScript } from './lua-script.js';
import { APPLY_REPORT_LUA, RECORD_READINESS_LUA, REGISTER_NODE_LUA, REPLACE_LABELS_LUA, SET_IF_EXISTS_LUA } from './lua/node.lua.js';
import { hashToNode, labelsOf } from './record-codec.js';
import type { RedisKeys } from './redis-keys.js';
import { REDIS, REDIS_KEYS } from './redis.provider.js';

/** What a Register sets of a node's record (the rest is the controller's or the reports'). */
export type NodeRegistration = Pick<
  NodeRecord,
  'nodeId' | 'address' | 'vcpus' | 'memoryMib' | 'cpuAllocationRatio' | 'ramAllocationRatio' | 'agentVersion'
> &
  // Optional: a registration that names none runs the emulator (the record codec's fallback).
  Partial<Pick<NodeRecord, 'hypervisor' | 'metricsUrl'>>;

export interface VmMeasurement {
  vmId: string;
  state: cluster.VmState;
  /** The epoch of the copy the agent runs. */
  fencingEpoch: number;
  measured: VmMeasured;
  /** The copy is the source of a migration in flight: its state is the migration's business. */
  outgoing: boolean;
}

export interface NodeReportUpdate {
  memoryUsedBytes: number;
  ksm: cluster.KsmStats | undefined;
  ksmKnobs: cluster.KsmKnobs | undefined;
  vms: readonly VmMeasurement[];
  /** Node.reported_vms: every copy the agent reported, migration copies included. */
  reportedVms: readonly cluster.ReportedVm[];
  /** A VM placed here that reports leave out for this long is returned as missing. */
  missingGraceMs: number;
}

export interface ReportResult {
  known: boolean;
  wasNotReady: boolean;
  /** VMs placed on the node, RUNNING or PAUSED, that its reports left out for longer than the grace. */
  missing: string[];
}

const applyReport = new RecordScript('apply-report', APPLY_REPORT_LUA);
const setIfExists = new RecordScript('set-if-exists', SET_IF_EXISTS_LUA);
const recordReadiness = new RecordScript('record-readiness', RECORD_READINESS_LUA);
const registerNode = new RecordScript('register-node', REGISTER_NODE_LUA);
const replaceLabels = new RecordScript('replace-labels', REPLACE_LABELS_LUA);

/** A node's labels as stored (`raw`, what replaceLabels compares against) and parsed. */
export interface StoredLabels {
  raw: string;
  labels: Record<string, string>;
}

@Injectable()
export class NodeRepository {
  constructor(
    @Inject(REDIS) private readonly redis: Redis,
    @Inject(REDIS_KEYS) private readonly keys: RedisKeys,
  ) {}

  /** Creates or refreshes a node; keeps its cordon flag and allocation counters. A registration counts as a report. */
  async upsertRegistration(reg: NodeRegistration, nowMs: number): Promise<void> {
    const fields = {
      nodeId: reg.nodeId,
      address: reg.address,
      vcpus: String(reg.vcpus),
      memoryMib: String(reg.memoryMib),
      cpuAllocationRatio: String(reg.cpuAllocationRatio),
      ramAllocationRatio: String(reg.ramAllocationRatio),
      agentVersion: reg.agentVersion,
      hypervisor: reg.hypervisor ?? 'emulator',
      metricsUrl: reg.metricsUrl ?? '',
      lastReportMs: String(nowMs),
      registeredAtMs: String(nowMs),
      readyRecorded: '1',
    };
    await registerNode.runJson(this.redis, this.keys, [this.keys.node(reg.nodeId), this.keys.nodes()], { nodeId: reg.nodeId, fields });
  }

  async get(nodeId: string): Promise<NodeRecord | undefined> {
    return hashToNode(await this.redis.hgetall(this.keys.node(nodeId)));
  }

  /** Every node, ordered by node id. */
  async list(): Promise<NodeRecord[]> {
    const ids = await this.redis.zrangebylex(this.keys.nodes(), '-', '+');
    if (ids.length === 0) return [];
    const pipeline = this.redis.pipeline();
    for (const id of ids) pipeline.hgetall(this.keys.node(id)).hgetall(this.keys.nodeImages(id));
    const results = (await pipeline.exec()) ?? [];
    const nodes: NodeRecord[] = [];
    for (let i = 0; i < results.length; i += 2) {
      const [error, hash] = results[i]!;
      const [imagesError, images] = results[i + 1]!;
      if (error) throw error;
      if (imagesError) throw imagesError;
      const node = hashToNode(hash as Record<string, string>);
      if (!node) continue;
      for (const [image, count] of Object.entries(images as Record<string, string>)) node.imageCounts[image] = Number(count);
      nodes.push(node);
    }
    return nodes;
  }

  /** Sets fields of an existing node; false if there is no such node. */
  async setFields(nodeId: string, fields: Record<string, string>): Promise<boolean> {
    const args = Object.entries(fields).flat();
    return (await setIfExists.run(this.redis, this.keys, [this.keys.node(nodeId)], args)) === 1;
  }

  async setCordoned(nodeId: string, cordoned: boolean): Promise<boolean> {
    return this.setFields(nodeId, { cordoned: cordoned ? '1' : '0' });
  }

  async setKsm(nodeId: string, knobs: cluster.KsmKnobs | undefined, stats: cluster.KsmStats | undefined): Promise<boolean> {
    const fields: Record<string, string> = {};
    if (knobs) fields.ksmKnobs = JSON.stringify(knobs);
    if (stats) fields.ksm = JSON.stringify(stats);
    if (Object.keys(fields).length === 0) return (await this.redis.exists(this.keys.node(nodeId))) === 1;
    return this.setFields(nodeId, fields);
  }

  /** The node's labels, or undefined when there is no such node. */
  async labels(nodeId: string): Promise<StoredLabels | undefined> {
    const [exists, raw] = await Promise.all([this.redis.exists(this.keys.node(nodeId)), this.redis.hget(this.keys.node(nodeId), 'labels')]);
    if (exists !== 1) return undefined;
    return { raw: raw ?? '', labels: labelsOf(raw ?? undefined) };
  }

  /** Writes `next` if the labels are still `seen.raw` (see REPLACE_LABELS_LUA). */
  async replaceLabels(nodeId: string, seen: StoredLabels, next: Record<string, string>): Promise<'OK' | 'CHANGED' | 'NO_NODE'> {
    const result = await replaceLabels.run(this.redis, this.keys, [this.keys.node(nodeId)], [seen.raw, JSON.stringify(next)]);
    return result === 1 ? 'OK' : result === 0 ? 'CHANGED' : 'NO_NODE';
  }

  /** Applies a report (see APPLY_REPORT_LUA); `known: false` when the node is not registered (the agent must register again). */
  async applyReport(nodeId: string, nowMs: number, update: NodeReportUpdate): Promise<ReportResult> {
    const placed = await this.redis.zrangebylex(this.keys.nodeVms(nodeId), '-', '+');
    const keys = [this.keys.node(nodeId), ...update.vms.map((vm) => this.keys.vm(vm.vmId)), ...placed.map((id) => this.keys.vm(id))];
    const args = {
      nodeId,
      nowMs,
      memoryUsedBytes: update.memoryUsedBytes,
      ksm: JSON.stringify(update.ksm ?? {}),
      ksmKnobs: update.ksmKnobs ? JSON.stringify(update.ksmKnobs) : '',
      reportedVms: JSON.stringify(update.reportedVms),
      missingGraceMs: update.missingGraceMs,
      vms: update.vms,
      placed,
    };
    const [flag, missing] = (await applyReport.runJson(this.redis, this.keys, keys, args)) as [number, string[]];
    return { known: flag !== -1, wasNotReady: flag === 1, missing: missing ?? [] };
  }

  /** VM id → epoch of the VMs deleted while their node was unreachable. */
  async tombstones(nodeId: string): Promise<Map<string, number>> {
    const h = await this.redis.hgetall(this.keys.nodeTombstones(nodeId));
    return new Map(Object.entries(h).map(([vmId, epoch]) => [vmId, Number(epoch)]));
  }

  /** Remembers a VM deleted on a node that could not be told: its copy is destroyed when the node reports it. */
  async addTombstone(nodeId: string, vmId: string, fencingEpoch: number): Promise<void> {
    await this.redis.hset(this.keys.nodeTombstones(nodeId), vmId, String(fencingEpoch));
  }

  async clearTombstones(nodeId: string, vmIds: readonly string[]): Promise<void> {
    if (vmIds.length > 0) await this.redis.hdel(this.keys.nodeTombstones(nodeId), ...vmIds);
  }

  /** Records a readiness change seen by the sweep, unless a report arrived since `seenLastReportMs`. */
  async recordReadiness(nodeId: string, ready: boolean, seenLastReportMs: number): Promise<boolean> {
    const result = await recordReadiness.run(this.redis, this.keys, [this.keys.node(nodeId)], [ready ? '1' : '0', String(seenLastReportMs)]);
    return result === 1;
  }
}
