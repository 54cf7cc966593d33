/**
 * gRPC server reflection (grpc.reflection.v1, and v1alpha for older clients) served from the descriptor
 * set that `buf build` makes of proto/ (src/gen/descriptors.binpb, written by `npm run gen`), plus the
 * health proto's. Those are the real descriptors: snake_case field names, map entry types, the
 * dependencies of every file. The descriptors @grpc/reflection rebuilds from protobufjs are not (maps
 * fail to load, names are camelCase, no file lists its imports), so Go tools (grpcurl, buf curl,
 * grpcui) could call nothing. Each server lists only the services it serves.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fromBinary, toBinary } from '@bufbuild/protobuf';
import {
  FileDescriptorProtoSchema,
  FileDescriptorSetSchema,
  type DescriptorProto,
  type EnumDescriptorProto,
  type FileDescriptorProto,
} from '@bufbuild/protobuf/wkt';
import { status, type Server, type ServerDuplexStream, type ServiceDefinition, type UntypedServiceImplementation } from '@grpc/grpc-js';
import { PROTO_ROOT } from './paths.js';
import {
  ServerReflectionService,
  type ServerReflectionRequest,
  type ServerReflectionResponse,
} from './gen/grpc/reflection/v1/reflection.js';

/** Written by `npm run gen` (proto/package.json): proto/'s files and the well-known types they import. */
export const DESCRIPTOR_SET_FILES = [
  path.join(PROTO_ROOT, 'src/gen/descriptors.binpb'),
  path.join(PROTO_ROOT, 'src/gen/health-descriptors.binpb'),
];

export const HEALTH_SERVICE_NAME = 'grpc.health.v1.Health';

/** The files of a descriptor set, by name and by the symbols they declare. */
export class DescriptorIndex {
  private readonly files = new Map<string, { proto: FileDescriptorProto; bytes: Uint8Array }>();
  private readonly symbols = new Map<string, string>();

  /** `sets`: serialized FileDescriptorSets (concatenated sets are one set on the wire). */
  constructor(...sets: Uint8Array[]) {
    for (const set of sets) {
      for (const file of fromBinary(FileDescriptorSetSchema, set).file) {
        if (this.files.has(file.name)) continue;
        this.files.set(file.name, { proto: file, bytes: toBinary(FileDescriptorProtoSchema, file) });
        this.indexFile(file);
      }
    }
  }

  static load(files: readonly string[] = DESCRIPTOR_SET_FILES): DescriptorIndex {
    return new DescriptorIndex(...files.map((f) => readFileSync(f)));
  }

  hasService(name: string): boolean {
    return this.symbols.has(name) && [...this.files.values()].some((f) => f.proto.service.some((s) => qualify(f.proto.package, s.name) === name));
  }

  /** The file declaring `symbol` and every file it imports, transitively (the file first); undefined if unknown. */
  filesContainingSymbol(symbol: string): Uint8Array[] | undefined {
    const file = this.symbols.get(symbol.replace(/^\./, ''));
    return file === undefined ? undefined : this.withDependencies(file);
  }

  /** The named file and every file it imports, transitively; undefined if unknown. */
  filesByName(name: string): Uint8Array[] | undefined {
    return this.files.has(name) ? this.withDependencies(name) : undefined;
  }

  /** Whether `name` is a message type the set declares. */
  hasMessage(name: string): boolean {
    return this.symbols.has(name.replace(/^\./, ''));
  }

  private withDependencies(name: string): Uint8Array[] {
    const out: Uint8Array[] = [];
    const seen = new Set<string>();
    const visit = (n: string) => {
      const file = this.files.get(n);
      if (!file || seen.has(n)) return;
      seen.add(n);
      out.push(file.bytes);
      for (const dep of file.proto.dependency) visit(dep);
    };
    visit(name);
    return out;
  }

  private indexFile(file: FileDescriptorProto): void {
    const add = (name: string) => this.symbols.set(name, file.name);
    const messages = (prefix: string, list: readonly DescriptorProto[]) => {
      for (const m of list) {
        const name = qualify(prefix, m.name);
        add(name);
        for (const f of m.field) add(`${name}.${f.name}`);
        for (const o of m.oneofDecl) add(`${name}.${o.name}`);
        enums(name, m.enumType);
        messages(name, m.nestedType);
      }
    };
    const enums = (prefix: string, list: readonly EnumDescriptorProto[]) => {
      for (const e of list) {
        const name = qualify(prefix, e.name);
        add(name);
        for (const v of e.value) add(qualify(prefix, v.name));
      }
    };
    messages(file.package, file.messageType);
    enums(file.package, file.enumType);
    for (const s of file.service) {
      const name = qualify(file.package, s.name);
      add(name);
      for (const m of s.method) add(`${name}.${m.name}`);
    }
  }
}

const qualify = (prefix: string, name: string) => (prefix ? `${prefix}.${name}` : name);

/** One reflection request's answer. */
export function answerReflection(index: DescriptorIndex, services: readonly string[], request: ServerReflectionRequest): ServerReflectionResponse {
  const base = { validHost: request.host, originalRequest: request };
  const notFound = (what: string): ServerReflectionResponse => ({
    ...base,
    errorResponse: { errorCode: status.NOT_FOUND, errorMessage: `${what} not found` },
  });
  if (request.listServices !== undefined) {
    return { ...base, listServicesResponse: { service: services.map((name) => ({ name })) } };
  }
  if (request.fileContainingSymbol !== undefined) {
    const files = index.filesContainingSymbol(request.fileContainingSymbol);
    return files ? { ...base, fileDescriptorResponse: { fileDescriptorProto: files.map((b) => Buffer.from(b)) } } : notFound(`symbol ${request.fileContainingSymbol}`);
  }
  if (request.fileByFilename !== undefined) {
    const files = index.filesByName(request.fileByFilename);
    return files ? { ...base, fileDescriptorResponse: { fileDescriptorProto: files.map((b) => Buffer.from(b)) } } : notFound(`file ${request.fileByFilename}`);
  }
  if (request.allExtensionNumbersOfType !== undefined) {
    // proto3 has no extensions: a known type has none, an unknown one is not found.
    const type = request.allExtensionNumbersOfType;
    return index.hasMessage(type) ? { ...base, allExtensionNumbersResponse: { baseTypeName: type, extensionNumber: [] } } : notFound(`type ${type}`);
  }
  if (request.fileContainingExtension !== undefined) {
    return notFound(`extension ${request.fileContainingExtension.extensionNumber} of ${request.fileContainingExtension.containingType}`);
  }
  return { ...base, errorResponse: { errorCode: status.INVALID_ARGUMENT, errorMessage: 'empty reflection request' } };
}

/** v1alpha's service: the same messages under another name. */
function underPackage(pkg: string): ServiceDefinition {
  const method = ServerReflectionService.serverReflectionInfo;
  return { serverReflectionInfo: { ...method, path: `/${pkg}.ServerReflection/ServerReflectionInfo` } } as unknown as ServiceDefinition;
}

/**
 * Adds reflection (v1 and v1alpha) to `server`, listing `services` (each must be in the descriptor
 * set) and the health service.
 * @throws Error naming a service the descriptors do not declare (a misconfigured server fails at start)
 */
export function addReflection(server: Server, services: readonly string[], index: DescriptorIndex = DescriptorIndex.load()): void {
  const listed = [...services, HEALTH_SERVICE_NAME];
  for (const name of listed) if (!index.hasService(name)) throw new Error(`reflection: ${name} is not in the descriptor set`);
  const implementation: UntypedServiceImplementation = {
    serverReflectionInfo: (call: ServerDuplexStream<ServerReflectionRequest, ServerReflectionResponse>) => {
      call.on('data', (request: ServerReflectionRequest) => call.write(answerReflection(index, listed, request)));
      call.on('end', () => call.end());
      call.on('error', () => {});
    },
  };
  server.addService(ServerReflectionService as unknown as ServiceDefinition, implementation);
  server.addService(underPackage('grpc.reflection.v1alpha'), implementation);
}
