/**
 * `-o json`: the API's canonical proto3 JSON mapping, as grpcurl and buf curl print it (lowerCamel
 * names, enums by name, int64 as strings, every field), made by protobufjs from the .proto itself.
 * A value that is not a whole API message (e.g. `vmctl version`'s client+server pair) prints as it is.
 */
import { existsSync } from 'node:fs';
import path from 'node:path';
import protobuf from 'protobufjs';
import { cluster, CLUSTER_PROTO, LOADER_OPTIONS } from '@vmm/proto';

type MessageName = 'ListNodesResponse' | 'ListVmsResponse' | 'ListMigrationsResponse' | 'ListImagesResponse' | 'Migration' | 'Vm' | 'Node' | 'Event';

let root: protobuf.Root | undefined;

function loadRoot(): protobuf.Root {
  if (root) return root;
  const r = new protobuf.Root();
  r.resolvePath = (origin, target) => {
    for (const dir of [...LOADER_OPTIONS.includeDirs, path.dirname(origin)]) {
      const candidate = path.join(dir, target);
      if (existsSync(candidate)) return candidate;
    }
    return target;
  };
  r.loadSync(CLUSTER_PROTO, { keepCase: false });
  root = r;
  return r;
}

/** Which API message `value` is, by the fields only it has; undefined for anything else. */
export function messageNameOf(value: unknown): MessageName | undefined {
  if (value === null || typeof value !== 'object' || Array.isArray(value)) return undefined;
  const o = value as Record<string, unknown>;
  const keys = Object.keys(o);
  if (keys.length === 1 && Array.isArray(o.nodes)) return 'ListNodesResponse';
  if (keys.length === 1 && Array.isArray(o.vms)) return 'ListVmsResponse';
  if (keys.length === 1 && Array.isArray(o.migrations)) return 'ListMigrationsResponse';
  if (keys.length === 1 && Array.isArray(o.images)) return 'ListImagesResponse';
  if ('revision' in o && 'type' in o && ('vm' in o || 'node' in o || 'migration' in o)) return 'Event';
  if (typeof o.migrationId === 'string' && 'phase' in o) return 'Migration';
  if (typeof o.vmId === 'string' && 'workload' in o) return 'Vm';
  if (typeof o.nodeId === 'string' && 'vcpusAllocated' in o) return 'Node';
  return undefined;
}

/** `value` in the proto3 JSON mapping when it is an API message; the messages inside a composite (`{node, vms}`) too. */
export function toProtoJson(value: unknown): unknown {
  const name = messageNameOf(value);
  if (!name) {
    if (Array.isArray(value)) return value.map(toProtoJson);
    if (value !== null && typeof value === 'object') return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, toProtoJson(v)]));
    return value;
  }
  const codec = cluster[name] as unknown as { fromPartial(v: unknown): unknown; encode(v: unknown): { finish(): Uint8Array } };
  const bytes = codec.encode(codec.fromPartial(value)).finish();
  const type = loadRoot().lookupType(`cluster.v1.${name}`);
  return type.toObject(type.decode(bytes), { longs: String, enums: String, defaults: true, arrays: true, objects: true, oneofs: false, json: true });
}
