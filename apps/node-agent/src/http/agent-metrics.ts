/**
 * The agent's HTTP port (AGENT_HTTP_PORT), advertised as Node.metrics_url: Prometheus `/metrics` with
 * its VMs (dirty rate, working set, resident pages; labels vm, node, image), the node's host frames and
 * KSM counters, the controller link (1 while it reports), and Node.js process metrics; `/livez`.
 * The VM figures are those of the last report sent: sampling a VM clears its report dirty log, so a
 * scrape must not sample on its own.
 */
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { collectDefaultMetrics, Gauge, Registry } from 'prom-client';
import type { agent, cluster } from '@vmm/proto';

const PAGE_BYTES = 4096;

/** What a scrape reads: the last report's VMs, the VMs' specs (for the image), the node's figures. */
export interface AgentMetricsSource {
  nodeId: string;
  lastVms(): readonly agent.VmReport[];
  imageOf(vmId: string): string | undefined;
  memoryUsedBytes(): number;
  ksm(): cluster.KsmStats | undefined;
  linkUp(): boolean;
}

export function createAgentMetrics(source: AgentMetricsSource): Registry {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const gauge = (name: string, help: string, labelNames: string[], fill: (g: Gauge) => void) =>
    new Gauge({ name, help, labelNames, registers: [registry], collect() { this.reset(); fill(this); } });
  const perVm = (name: string, help: string, value: (v: agent.VmReport) => number) =>
    gauge(name, help, ['vm', 'node', 'image'], (g) => {
      for (const v of source.lastVms()) g.set({ vm: v.vmId, node: source.nodeId, image: source.imageOf(v.vmId) ?? '' }, value(v));
    });
  perVm('vmm_vm_dirty_memory_rate_bytes', 'Measured guest dirty rate over the last report, bytes per second.', (v) => v.dirtyRatePagesPerSec * PAGE_BYTES);
  perVm('vmm_vm_working_set_bytes', 'Distinct bytes the guest wrote over the recent window.', (v) => v.workingSetPages * PAGE_BYTES);
  perVm('vmm_vm_resident_pages', 'Guest pages backed by a host frame.', (v) => v.residentPages);
  const node = (name: string, help: string, value: () => number | undefined) =>
    gauge(name, help, ['node'], (g) => {
      const v = value();
      if (v !== undefined) g.set({ node: source.nodeId }, v);
    });
  node('vmm_agent_memory_used_bytes', 'Host frames held for guest memory (after KSM).', () => source.memoryUsedBytes());
  node('vmm_agent_ksm_pages_shared', 'KSM pages_shared.', () => source.ksm()?.pagesShared);
  node('vmm_agent_ksm_pages_sharing', 'KSM pages_sharing.', () => source.ksm()?.pagesSharing);
  node('vmm_agent_controller_link_up', '1 while the agent is registered and reporting to the controller.', () => (source.linkUp() ? 1 : 0));
  return registry;
}

export interface AgentHttpServer {
  port: number;
  close(): Promise<void>;
}

export async function startAgentHttpServer(host: string, port: number, registry: Registry): Promise<AgentHttpServer> {
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? '/').split('?')[0];
    const text = (status: number, body: string, type = 'text/plain; charset=utf-8') => {
      res.writeHead(status, { 'content-type': type });
      res.end(body);
    };
    if (req.method !== 'GET' && req.method !== 'HEAD') return text(405, 'method not allowed\n');
    if (path === '/livez') return text(200, 'ok\n');
    if (path === '/metrics') {
      registry.metrics().then((body) => text(200, body, registry.contentType), (err: unknown) => text(500, `metrics failed: ${String(err)}\n`));
      return;
    }
    text(404, 'not found\n');
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  return {
    port: (server.address() as AddressInfo).port,
    close: () => new Promise((resolve) => { server.closeAllConnections(); server.close(() => resolve()); }),
  };
}
