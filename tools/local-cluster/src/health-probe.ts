#!/usr/bin/env node
// `node tools/local-cluster/dist/health-probe.js host:port [service]`: exits 0 when grpc.health.v1
// says SERVING, 1 otherwise. The Docker image has no grpc_health_probe; compose healthchecks use this.
// With TLS_CA_FILE, TLS_CERT_FILE and TLS_KEY_FILE in the environment (a container's own certificate)
// it speaks mutual TLS, as an agent's port requires.
import { credentials } from '@grpc/grpc-js';
import { mutualTlsChannelCredentials, readTlsMaterial } from '@vmm/tls';
import { checkHealth } from './health.js';

const [address, service = ''] = process.argv.slice(2);
if (!address) {
  process.stderr.write('usage: health-probe host:port [service]\n');
  process.exit(2);
}
const { TLS_CA_FILE: ca, TLS_CERT_FILE: cert, TLS_KEY_FILE: key, AGENT_PLANE_INSECURE: insecure } = process.env;
const useTls = insecure !== '1' && process.argv[4] !== '--plaintext' && ca && cert && key;
const channel = useTls ? mutualTlsChannelCredentials(readTlsMaterial({ ca, cert, key })) : credentials.createInsecure();
checkHealth(address, service, 2000, channel).then(
  (status) => {
    process.stdout.write(`${status}\n`);
    process.exit(status === 'SERVING' ? 0 : 1);
  },
  (err: Error) => {
    process.stderr.write(`${err.message}\n`);
    process.exit(1);
  },
);
