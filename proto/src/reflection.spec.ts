import { status } from '@grpc/grpc-js';
import { describe, expect, it } from 'vitest';
import { fromBinary } from '@bufbuild/protobuf';
import { FileDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { answerReflection, DescriptorIndex } from './reflection.js';
import { reflectionV1 } from './index.js';

const index = DescriptorIndex.load();
const ask = (partial: Partial<reflectionV1.ServerReflectionRequest>) =>
  answerReflection(index, ['cluster.v1.ClusterService'], reflectionV1.ServerReflectionRequest.fromPartial(partial));
const fileNames = (r: reflectionV1.ServerReflectionResponse) =>
  (r.fileDescriptorResponse?.fileDescriptorProto ?? []).map((b) => fromBinary(FileDescriptorProtoSchema, b).name);

describe('reflection from buf descriptors', () => {
  it('answers a symbol with its file first and every file it imports', () => {
    expect(fileNames(ask({ fileContainingSymbol: 'agent.v1.AgentService' }))).toEqual(['agent/v1/agent.proto', 'cluster/v1/cluster.proto']);
    // A method, a nested map entry and an enum value are symbols too.
    expect(fileNames(ask({ fileContainingSymbol: 'cluster.v1.ClusterService.ListNodes' }))[0]).toBe('cluster/v1/cluster.proto');
    expect(fileNames(ask({ fileContainingSymbol: 'cluster.v1.Vm.LabelsEntry' }))[0]).toBe('cluster/v1/cluster.proto');
  });

  it('serves the real descriptors: snake_case names, map entries, declared dependencies', () => {
    const [bytes] = ask({ fileByFilename: 'cluster/v1/cluster.proto' }).fileDescriptorResponse!.fileDescriptorProto;
    const file = fromBinary(FileDescriptorProtoSchema, bytes!);
    const vm = file.messageType.find((m) => m.name === 'Vm')!;
    expect(vm.field.map((f) => f.name)).toContain('memory_mib');
    expect(vm.nestedType.find((n) => n.name === 'LabelsEntry')?.options?.mapEntry).toBe(true);
    const [agentBytes] = ask({ fileByFilename: 'agent/v1/agent.proto' }).fileDescriptorResponse!.fileDescriptorProto;
    expect(fromBinary(FileDescriptorProtoSchema, agentBytes!).dependency).toContain('cluster/v1/cluster.proto');
  });

  it('lists only the services given; unknown names are NOT_FOUND', () => {
    expect(ask({ listServices: '' }).listServicesResponse?.service.map((s) => s.name)).toEqual(['cluster.v1.ClusterService']);
    expect(ask({ fileContainingSymbol: 'cluster.v1.Nope' }).errorResponse?.errorCode).toBe(status.NOT_FOUND);
    expect(ask({ fileByFilename: 'nope.proto' }).errorResponse?.errorCode).toBe(status.NOT_FOUND);
    expect(ask({ allExtensionNumbersOfType: 'cluster.v1.Vm' }).allExtensionNumbersResponse?.extensionNumber).toEqual([]);
    expect(ask({}).errorResponse?.errorCode).toBe(status.INVALID_ARGUMENT);
  });
});
