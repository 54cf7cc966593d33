/**
 * grpc.health.v1.Health and server reflection (v1 and v1alpha) on the Nest gRPC server, attached
 * through Nest's onLoadPackageDefinition hook (docs/stack.md §5).
 */
import type { Server } from '@grpc/grpc-js';
import { loadSync, type PackageDefinition } from '@grpc/proto-loader';
import { ReflectionService } from '@grpc/reflection';
import { HealthImplementation, protoPath as healthProtoPath } from 'grpc-health-check';

export const SERVED_SERVICES = ['cluster.v1.ClusterService', 'agent.v1.RegistryService'] as const;

export function createHealth(): HealthImplementation {
  const statuses: Record<string, 'SERVING' | 'NOT_SERVING'> = { '': 'SERVING' };
  for (const name of SERVED_SERVICES) statuses[name] = 'SERVING';
  return new HealthImplementation(statuses);
}

export function setAllNotServing(health: HealthImplementation): void {
  health.setStatus('', 'NOT_SERVING');
  for (const name of SERVED_SERVICES) health.setStatus(name, 'NOT_SERVING');
}

export function attachHealthAndReflection(pkg: PackageDefinition, server: Server, health: HealthImplementation): void {
  health.addToServer(server);
  const withHealth = { ...pkg, ...loadSync(healthProtoPath) };
  new ReflectionService(withHealth).addToServer(server);
}
