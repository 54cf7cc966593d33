#!/usr/bin/env node
/** `npm run certs -- --out DIR --nodes node-1,node-2 [--hosts h1,h2] [--days N]`: the cluster's certificates. */
import { parseArgs } from 'node:util';
import { CertsUsageError, makeClusterCerts } from './cluster-ca.js';

const USAGE = `usage: npm run certs -- --out DIR --nodes node-1,node-2,… [--hosts HOST,…] [--days N]
  --out DIR     where to write ca.pem, controller.pem, operator.pem, <node>.pem and their -key.pem files
                (an existing ca.pem + ca-key.pem there is reused: new nodes join the same CA)
  --nodes IDS   node ids, one certificate each (the id in its subject alternative name)
  --hosts LIST  extra DNS names or IPs the controller's and nodes' server certificates name
  --days N      validity of the leaf certificates (default 365; the CA: 10 years)
  --split       also <DIR>/<holder>/ with ca.pem and that holder's pair only (what a host may hold)
  --api-token-file FILE   also a file with a random operator token (API_TOKENS_FILE), unless FILE exists`;

function list(value: string | undefined): string[] {
  return (value ?? '').split(',').map((s) => s.trim()).filter((s) => s !== '');
}

async function main(): Promise<void> {
  let values;
  try {
    ({ values } = parseArgs({
      options: { out: { type: 'string' }, nodes: { type: 'string' }, hosts: { type: 'string' }, days: { type: 'string' }, split: { type: 'boolean' }, 'api-token-file': { type: 'string' }, help: { type: 'boolean' } },
      strict: true,
    }));
  } catch (err) {
    process.stderr.write(`certs: ${(err as Error).message}\n${USAGE}\n`);
    process.exit(2);
  }
  if (values.help) return void process.stdout.write(`${USAGE}\n`);
  if (!values.out) {
    process.stderr.write(`certs: --out is required\n${USAGE}\n`);
    process.exit(2);
  }
  try {
    const made = await makeClusterCerts({
      out: values.out,
      nodes: list(values.nodes),
      hosts: list(values.hosts),
      days: values.days === undefined ? undefined : Number(values.days),
      split: values.split === true,
      apiTokenFile: values['api-token-file'],
    });
    process.stdout.write(`certificates in ${made.dir}${made.reusedCa ? ' (existing CA reused)' : ''}:\n${made.files.map((f) => `  ${f}`).join('\n')}\n`);
  } catch (err) {
    if (err instanceof CertsUsageError) {
      process.stderr.write(`certs: ${err.message}\n${USAGE}\n`);
      process.exit(2);
    }
    throw err;
  }
}

void main();
