/**
 * Bearer-token authentication of ClusterService calls (docs/api.md): with API_TOKENS set, each call must
 * carry `authorization: Bearer <token>` with one of them. Registry, health and reflection are open.
 */
import { Inject, Injectable, type CanActivate, type ExecutionContext } from '@nestjs/common';
import type { Metadata } from '@grpc/grpc-js';
import { timingSafeEqual } from 'node:crypto';
import { CONFIG, type ControllerConfig } from '../config.js';
import { UnauthenticatedError } from '../errors.js';

export function checkBearer(metadata: Pick<Metadata, 'get'> | undefined, tokens: readonly string[]): void {
  if (tokens.length === 0) return;
  const values = metadata?.get('authorization') ?? [];
  const header = values.length > 0 ? String(values[0]) : '';
  if (!header) throw new UnauthenticatedError('missing authorization metadata (expected "Bearer <token>")');
  const match = /^Bearer\s+(.+)$/i.exec(header.trim());
  if (!match) throw new UnauthenticatedError('authorization must be "Bearer <token>"');
  const given = Buffer.from(match[1]!);
  const ok = tokens.some((t) => {
    const expected = Buffer.from(t);
    return expected.length === given.length && timingSafeEqual(expected, given);
  });
  if (!ok) throw new UnauthenticatedError('invalid token');
}

@Injectable()
export class ApiTokenGuard implements CanActivate {
  constructor(@Inject(CONFIG) private readonly config: ControllerConfig) {}

  canActivate(context: ExecutionContext): boolean {
    checkBearer(context.switchToRpc().getContext<Metadata>(), this.config.apiTokens);
    return true;
  }
}
