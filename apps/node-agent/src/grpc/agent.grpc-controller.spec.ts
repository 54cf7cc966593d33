import 'reflect-metadata';
import { describe, expect, it } from 'vitest';
import { KsmService } from '../ksm/ksm.service.js';
import { MigrationService } from '../migration/migration.service.js';
import { VmManager } from '../vm/vm-manager.js';
import { AgentGrpcController } from './agent.grpc-controller.js';

// Missing decorator metadata fails silently in Nest (docs/stack.md G5): guard both ways DI can resolve.
describe('AgentGrpcController DI metadata', () => {
  it('has design:paramtypes from the transformer', () => {
    expect(Reflect.getMetadata('design:paramtypes', AgentGrpcController)).toEqual([VmManager, MigrationService, KsmService]);
  });

  it('has explicit @Inject tokens that do not depend on the transformer', () => {
    const injected = Reflect.getMetadata('self:paramtypes', AgentGrpcController) as { index: number; param: unknown }[];
    expect([...injected].sort((a, b) => a.index - b.index)).toEqual([
      { index: 0, param: VmManager },
      { index: 1, param: MigrationService },
      { index: 2, param: KsmService },
    ]);
  });
});
