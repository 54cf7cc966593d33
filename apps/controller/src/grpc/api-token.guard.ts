/**
 * Bearer-token authentication of ClusterService calls (docs/api.md): with tokens configured, each call
 * must carry `authorization: Bearer <token>` with one of them; an operator token may call everything,
 * a reader token Get*, List* and Watch* only. Registry, health and reflection are not ClusterService
 * and are authorized at the transport (grpc/agent-plane-policy.ts).
 */
import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { Metadata } from '@grpc/grpc-js';
import { timingSafeEqual } from 'node:crypto';
import { CONFIG, type ApiTokens, type ControllerConfig } from '../config.js';
import { PermissionDeniedError, UnauthenticatedError } from '../errors.js';

export type TokenScope = 'operator' | 'reader';

/** Calls a reader may make: they read and change nothing. */
export function isReadMethod(method: string): boolean {
  return /^(get|list|watch)[A-Z]/.test(method);
}

function matches(tokens: readonly string[], given: Buffer): boolean {
  // Every candidate compared, each in constant time: the answer's timing says nothing about which.
  let found = false;
  for (const t of tokens) {
    const expected = Buffer.from(t);
    if (expected.length === given.length && timingSafeEqual(expected, given)) found = true;
  }
  return found;
}

/** The scope of the call's token; undefined when auth is off (no tokens configured). */
export function checkBearer(metadata: Pick<Metadata, 'get'> | undefined, tokens: ApiTokens): TokenScope | undefined {
  if (tokens.operator.length === 0 && tokens.reader.length === 0) return undefined;
  const values = metadata?.get('authorization') ?? [];
  const header = values.length > 0 ? String(values[0]) : '';
  if (!header) throw new UnauthenticatedError('missing authorization metadata (expected "Bearer <token>")');
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!match) throw new UnauthenticatedError('authorization must be "Bearer <token>"');
  const given = Buffer.from(match[1]!);
  if (matches(tokens.operator, given)) return 'operator';
  if (matches(tokens.reader, given)) return 'reader';
  throw new UnauthenticatedError('invalid token');
}

/** Refuses `method` (a handler name, e.g. createVm) to a reader. */
export function checkScope(scope: TokenScope | undefined, method: string): void {
  if (scope === 'reader' && !isReadMethod(method)) {
    throw new PermissionDeniedError(`a reader token may call Get*, List* and Watch* only, not ${method.charAt(0).toUpperCase()}${method.slice(1)}`);
  }
}

@Injectable()
export class ApiTokenGuard implements CanActivate {
  constructor(@Inject(CONFIG) private readonly config: ControllerConfig) {}

  canActivate(context: ExecutionContext): boolean {
    const scope = checkBearer(context.switchToRpc().getContext<Metadata>(), this.config.apiTokens);
    checkScope(scope, context.getHandler().name);
    return true;
  }
}
