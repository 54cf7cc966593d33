#!/usr/bin/env node
// vmctl: the operator CLI over the ClusterService gRPC API. The command tree lives in program.ts.
import { processIo } from './io.js';
import { execute } from './program.js';

process.exitCode = await execute(process.argv.slice(2), processIo());
