/** Node queries and operator actions (cordon, KSM knobs), and the wire shape of a node. */
import { Inject, Injectable } from '@nestjs/common';
import { KNOB_RANGES } from '@vmm/ksm/knobs';
import { cluster } from '@vmm/proto';
import { AgentGateway } from '../agent/agent.gateway.js';
import type { NodeRecord } from '../common/model.js';
import { requireFound, requireId } from '../common/require-found.js';
import { CONFIG, type ControllerConfig } from '../config.js';
import { applyLabelChange } from '../common/labels.js';
import { InvalidArgumentError, NodeNotFoundError, RequestInProgressError } from '../errors.js';
import { NodeRepository } from '../redis/node.repository.js';
import type { LargestNode } from '../vm/vm-validation.js';
import { nodeStateOf } from './node-state.js';
import { nextPageToken, readPageRequest } from '../common/page-token.js';

const MIB = 1024 * 1024;
/** LabelNode's compare-and-set attempts before it answers ABORTED (other LabelNode calls kept winning). */
const LABEL_ATTEMPTS = 5;

@Injectable()
export class NodeService {
  constructor(
    @Inject(CONFIG) private readonly config: ControllerConfig,
    @Inject(NodeRepository) private readonly nodes: NodeRepository,
    @Inject(AgentGateway) private readonly agents: AgentGateway,
  ) {}

  async list(): Promise<cluster.Node[]> {
    const now = Date.now();
    return (await this.nodes.list()).map((n) => this.toProto(n, now));
  }

  /** ListNodes: a page of the nodes in id order (nodes are few: the page is cut from the whole list). */
  async listPage(request: Partial<cluster.ListNodesRequest>): Promise<Omit<cluster.ListNodesResponse, 'revision'>> {
    const { pageSize, after } = readPageRequest(request, '');
    const all = await this.list();
    const rest = after ? all.filter((n) => n.nodeId > after) : all;
    const nodes = rest.slice(0, pageSize);
    return { nodes, nextPageToken: nextPageToken(rest.length > pageSize, nodes.at(-1)?.nodeId, '') };
  }

  async get(nodeId: string): Promise<cluster.Node> {
    return this.toProto(await this.require(nodeId), Date.now());
  }

  async require(nodeId: string): Promise<NodeRecord> {
    return requireFound('node_id', nodeId, (id) => this.nodes.get(id), (id) => new NodeNotFoundError(id));
  }

  async setCordoned(nodeId: string, cordoned: boolean): Promise<cluster.Node> {
    requireId('node_id', nodeId);
    // Uncordon also ends a drain (DrainNode leaves the node cordoned and DRAINING).
    const fields: Record<string, string> = cordoned ? { cordoned: '1' } : { cordoned: '0', draining: '0' };
    if (!(await this.nodes.setFields(nodeId, fields))) throw new NodeNotFoundError(nodeId);
    return this.get(nodeId);
  }

  /**
   * LabelNode: drops the `remove` keys and sets `labels` (validated as VM labels are), as one
   * compare-and-set on the node's record, read again if another LabelNode wrote in between.
   */
  async label(nodeId: string, labels: Record<string, string>, remove: readonly string[]): Promise<cluster.Node> {
    requireId('node_id', nodeId);
    for (let attempt = 0; attempt < LABEL_ATTEMPTS; attempt++) {
      const seen = await this.nodes.labels(nodeId);
      if (!seen) throw new NodeNotFoundError(nodeId);
      const outcome = await this.nodes.replaceLabels(nodeId, seen, applyLabelChange(seen.labels, labels, remove));
      if (outcome === 'NO_NODE') throw new NodeNotFoundError(nodeId);
      if (outcome === 'OK') return this.get(nodeId);
    }
    throw new RequestInProgressError(`LabelNode ${nodeId}`);
  }

  /** Forwards the knobs to the node's agent (SetKsm) and records what it answers. */
  async setKsm(nodeId: string, knobs: cluster.KsmKnobs | undefined): Promise<cluster.Node> {
    const node = await this.require(nodeId);
    const clean = validateKnobs(knobs ?? {});
    const answer = await this.agents.setKsm(node, clean);
    await this.nodes.setKsm(nodeId, answer.knobs ?? undefined, answer.stats ?? undefined);
    return this.get(nodeId);
  }

  /** Per-resource maximum of physical capacity over all registered nodes; undefined when there are none. */
  static largestNode(nodes: readonly NodeRecord[]): LargestNode | undefined {
    if (nodes.length === 0) return undefined;
    return {
      vcpus: Math.max(...nodes.map((n) => n.vcpus)),
      memoryMib: Math.max(...nodes.map((n) => n.memoryMib)),
    };
  }

  toProto(n: NodeRecord, nowMs: number): cluster.Node {
    return {
      nodeId: n.nodeId,
      address: n.address,
      state: nodeStateOf(n, nowMs, this.config.nodeStaleAfterMs, this.config.startedAtMs),
      vcpus: n.vcpus,
      memoryMib: n.memoryMib,
      cpuAllocationRatio: n.cpuAllocationRatio,
      ramAllocationRatio: n.ramAllocationRatio,
      vcpusAllocated: n.vcpusAllocated,
      memoryMibAllocated: n.memoryMibAllocated,
      memoryMibUsed: n.memoryUsedBytes / MIB,
      ksm: n.ksm ?? cluster.KsmStats.fromPartial({}),
      vmCount: n.vmCount,
      ksmKnobs: n.ksmKnobs ?? {},
      lastReportMs: n.lastReportMs,
      cordoned: n.cordoned,
      reportedVms: n.reportedVms,
      hypervisor: n.hypervisor,
      metricsUrl: n.metricsUrl,
      labels: n.labels,
    };
  }
}

/** Only the knobs that are set (proto3 optional: null/undefined = keep), each within libs/ksm's range. */
function validateKnobs(k: cluster.KsmKnobs): cluster.KsmKnobs {
  const out: cluster.KsmKnobs = {};
  const int = (field: keyof typeof KNOB_RANGES, value: number | null | undefined): number | undefined => {
    if (value === null || value === undefined) return undefined;
    const { min, max } = KNOB_RANGES[field];
    if (!Number.isInteger(value) || value < min || value > max) {
      throw new InvalidArgumentError(`knobs.${field}`, `must be a whole number in ${min}..${max}`);
    }
    return value;
  };
  const run = int('run', k.run);
  const pagesToScan = int('pages_to_scan', k.pagesToScan);
  const sleepMillisecs = int('sleep_millisecs', k.sleepMillisecs);
  const maxPageSharing = int('max_page_sharing', k.maxPageSharing);
  if (run !== undefined) out.run = run;
  if (pagesToScan !== undefined) out.pagesToScan = pagesToScan;
  if (sleepMillisecs !== undefined) out.sleepMillisecs = sleepMillisecs;
  if (maxPageSharing !== undefined) out.maxPageSharing = maxPageSharing;
  if (k.useZeroPages !== null && k.useZeroPages !== undefined) out.useZeroPages = Boolean(k.useZeroPages);
  return out;
}
