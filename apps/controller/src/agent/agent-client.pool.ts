/**
 * One grpc-js AgentService client per agent address, reused across calls, closed at shutdown.
 *
 * A channel whose agent died sits in TRANSIENT_FAILURE with a reconnect backoff; when the agent is
 * back (it registers again) `reset()` replaces the channel, so that the next call connects at once
 * instead of waiting out the backoff. Each channel has its own subchannel pool: grpc-js shares
 * subchannels between equal channels by default, and a new channel would inherit the old backoff.
 */
import { Inject, Injectable, type OnModuleDestroy } from '@nestjs/common';
import type { ChannelCredentials } from '@grpc/grpc-js';
import { agent } from '@vmm/proto';
import { agentPlaneChannelCredentials } from '@vmm/tls';
import { CONFIG, type ControllerConfig } from '../config.js';

/**
 * Agents restart during tests and demos: reconnect quickly instead of backing off for long. Keepalive
 * pings notice an agent that went silent (frozen, partitioned) in seconds, also while a progress
 * stream is open and no message flows.
 */
export const AGENT_CHANNEL_OPTIONS = {
  'grpc.initial_reconnect_backoff_ms': 200,
  'grpc.max_reconnect_backoff_ms': 2000,
  'grpc.use_local_subchannel_pool': 1,
  'grpc.keepalive_time_ms': 5_000,
  'grpc.keepalive_timeout_ms': 5_000,
  'grpc.keepalive_permit_without_calls': 1,
};

/** A replaced channel is closed only after the longest call that may have been queued on it. */
export const RETIRED_CHANNEL_CLOSE_MS = 60_000;

@Injectable()
export class AgentClientPool implements OnModuleDestroy {
  private readonly clients = new Map<string, { client: agent.AgentServiceClient; nodeId: string }>();
  private readonly retired = new Set<agent.AgentServiceClient>();
  private readonly retireTimers = new Set<NodeJS.Timeout>();
  private readonly plane: ControllerConfig['agentPlane'];

  constructor(@Inject(CONFIG) config: Pick<ControllerConfig, 'agentPlane'>) {
    this.plane = config.agentPlane;
  }

  /**
   * The channel to node `nodeId`'s agent at `address`, with the controller's certificate, accepting
   * only a server whose certificate names that node: another node's agent at that address (a moved
   * address, or one posing as it) fails the handshake instead of receiving the call.
   */
  get(address: string, nodeId: string): agent.AgentServiceClient {
    const cached = this.clients.get(address);
    if (cached?.nodeId === nodeId) return cached.client;
    if (cached) this.reset(address);
    const credentials: ChannelCredentials = agentPlaneChannelCredentials(this.plane, { role: 'node', nodeId });
    const client = new agent.AgentServiceClient(address, credentials, AGENT_CHANNEL_OPTIONS);
    this.clients.set(address, { client, nodeId });
    return client;
  }

  /**
   * Forgets the channel to `address` (an agent registered there again: restarted, or moved). Calls
   * already running on the old channel go on (grpc-js closes its connection gracefully); the old
   * channel is closed later so that calls still waiting for a connection on it are not cut short.
   * @returns whether there was a channel to replace
   */
  reset(address: string): boolean {
    const old = this.clients.get(address)?.client;
    if (!old) return false;
    this.clients.delete(address);
    this.retired.add(old);
    const timer = setTimeout(() => {
      this.retireTimers.delete(timer);
      this.retired.delete(old);
      old.close();
    }, RETIRED_CHANNEL_CLOSE_MS);
    timer.unref();
    this.retireTimers.add(timer);
    return true;
  }

  onModuleDestroy(): void {
    for (const timer of this.retireTimers) clearTimeout(timer);
    this.retireTimers.clear();
    for (const client of [...[...this.clients.values()].map((c) => c.client), ...this.retired]) client.close();
    this.clients.clear();
    this.retired.clear();
  }
}
