/**
 * Debug tracing, off unless VMM_TRACE lists "migration" (e.g. VMM_TRACE=migration), as grpc-js gates
 * GRPC_TRACE. Callers pass a function, so no string is built when tracing is off; never per page.
 */
const enabled = (process.env.VMM_TRACE ?? '').split(',').some((t) => t.trim() === 'migration' || t.trim() === 'all');

export function isTraceEnabled(): boolean {
  return enabled;
}

export function trace(migrationId: string, message: () => string): void {
  if (!enabled) return;
  process.stderr.write(`${new Date().toISOString()} migration ${migrationId} ${message()}\n`);
}
