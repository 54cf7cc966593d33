#!/usr/bin/env node
// `node tools/local-cluster/dist/health-probe.js host:port [service]`: exits 0 when grpc.health.v1
// says SERVING, 1 otherwise. The Docker image has no grpc_health_probe; compose healthchecks use this.
import { checkHealth } from './health.js';

const [address, service = ''] = process.argv.slice(2);
if (!address) {
  process.stderr.write('usage: health-probe host:port [service]\n');
  process.exit(2);
}
checkHealth(address, service, 2000).then(
  (status) => {
    process.stdout.write(`${status}\n`);
    process.exit(status === 'SERVING' ? 0 : 1);
  },
  (err: Error) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  },
);
