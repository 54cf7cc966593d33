/** One grpc-js AgentService client per agent address, reused across calls, closed at shutdown. */
import { Injectable, type OnModuleDestroy } from '@nestjs/common';
import { credentials } from '@grpc/grpc-js';
import { agent } from '@vmm/proto';

@Injectable()
export class AgentClientPool implements OnModuleDestroy {
  private readonly clients = new Map<string, agent.AgentServiceClient>();

  get(address: string): agent.AgentServiceClient {
    let client = this.clients.get(address);
    if (!client) {
      client = new agent.AgentServiceClient(address, credentials.createInsecure(), {
        // Agents restart during tests and demos: reconnect quickly instead of backing off for long.
        'grpc.initial_reconnect_backoff_ms': 200,
        'grpc.max_reconnect_backoff_ms': 2000,
      });
      this.clients.set(address, client);
    }
    return client;
  }

  onModuleDestroy(): void {
    for (const client of this.clients.values()) client.close();
    this.clients.clear();
  }
}
