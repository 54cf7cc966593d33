/**
 * grpc-js passes the dialled host as the TLS server name, also when it is an IP address, and Node
 * warns about that once per process (DEP0123) on stderr, outside the JSON log. It is harmless here:
 * the certificate is verified against the IP subject alternative names. Every other warning goes to
 * the process's logger instead of bare stderr.
 */
const HARMLESS = new Set(['DEP0123']);

export function routeProcessWarnings(log: (warning: Error & { code?: string }) => void): void {
  process.removeAllListeners('warning');
  process.on('warning', (warning: Error & { code?: string }) => {
    if (warning.code !== undefined && HARMLESS.has(warning.code)) return;
    log(warning);
  });
}
