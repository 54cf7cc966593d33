/**
 * grpc.health.v1.Health and server reflection (v1 and v1alpha, from buf's descriptors: @vmm/proto's
 * reflection.ts) on the Nest gRPC server, attached through Nest's onLoadPackageDefinition hook
 * (docs/stack.md §5). Reflection lists the services served here, not agent.v1.AgentService.
 */
import type { Server } from '@grpc/grpc-js';
import { addReflection } from '@vmm/proto';
import { HealthImplementation } from 'grpc-health-check';

export const SERVED_SERVICES = ['cluster.v1.ClusterService', 'agent.v1.RegistryService'] as const;

export function createHealth(): HealthImplementation {
  const statuses: Record<string, 'SERVING' | 'NOT_SERVING'> = { '': 'SERVING' };
  for (const name of SERVED_SERVICES) statuses[name] = 'SERVING';
  return new HealthImplementation(statuses);
}

export function setAllNotServing(health: HealthImplementation): void {
  setAll(health, 'NOT_SERVING');
}

export function setAll(health: HealthImplementation, status: 'SERVING' | 'NOT_SERVING'): void {
  health.setStatus('', status);
  for (const name of SERVED_SERVICES) health.setStatus(name, status);
}

/**
 * Health follows Redis, the controller's memory: NOT_SERVING from the moment the connection drops
 * until it is ready again (ioredis reconnects on its own), SERVING otherwise, until shutdown.
 */
export function followRedis(health: HealthImplementation, redis: Pick<import('ioredis').Redis, 'on' | 'status'>, onChange?: (serving: boolean) => void): { stop(): void } {
  let stopped = false;
  let serving = redis.status === 'ready' || redis.status === 'connecting' || redis.status === 'connect';
  const set = (next: boolean) => {
    if (stopped || next === serving) return;
    serving = next;
    setAll(health, next ? 'SERVING' : 'NOT_SERVING');
    onChange?.(next);
  };
  redis.on('ready', () => set(true));
  redis.on('close', () => set(false));
  redis.on('end', () => set(false));
  return { stop: () => void (stopped = true) };
}

export function attachHealthAndReflection(server: Server, health: HealthImplementation): void {
  health.addToServer(server);
  addReflection(server, SERVED_SERVICES);
}
