#!/usr/bin/env node
// vmctl: the operator CLI over the ClusterService gRPC API. The command tree lives in program.ts.
import { routeProcessWarnings } from '@vmm/tls/process-warnings';
import { processIo } from './io.js';
import { execute } from './program.js';

// grpc-js's DEP0123 (an IP as TLS server name, with --ca) is harmless; any other warning still shows.
routeProcessWarnings((warning) => process.stderr.write(`warning: ${warning.message}\n`));

// `vmctl vms | head`: the reader went away. That ends the output, not in a stack trace (as for cat).
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  process.exit(0);
});

process.exitCode = await execute(process.argv.slice(2), processIo());
