import { describe, expect, it } from 'vitest';
import { parseClusterArgs, UsageError } from './args.js';

describe('parseClusterArgs', () => {
  it('has the defaults of docs/api.md', () => {
    expect(parseClusterArgs([])).toMatchObject({
      agents: 3,
      port: 50051,
      token: undefined,
      readToken: undefined,
      nodeMemoryMib: 8192,
      nodeVcpus: 8,
      supervise: false,
      httpPort: undefined,
      hypervisor: 'emulator',
      certsDir: undefined,
      insecure: false,
      apiTls: false,
    });
  });

  it('reads every documented flag', () => {
    expect(
      parseClusterArgs(['--agents', '2', '--port', '50555', '--token', 't0k', '--node-memory-mib', '4096', '--node-vcpus', '4']),
    ).toMatchObject({ agents: 2, port: 50555, token: 't0k', nodeMemoryMib: 4096, nodeVcpus: 4 });
    expect(parseClusterArgs(['--agents=5'])).toMatchObject({ agents: 5 });
    expect(
      parseClusterArgs([
        '--supervise', '--http-port', '8080', '--hypervisor', 'qemu', '--certs-dir', '/tmp/certs', '--insecure', '--api-tls',
        '--token', 'op', '--read-token', 'reader',
      ]),
    ).toMatchObject({
      supervise: true,
      httpPort: 8080,
      hypervisor: 'qemu',
      certsDir: '/tmp/certs',
      insecure: true,
      apiTls: true,
      token: 'op',
      readToken: 'reader',
    });
  });

  it.each([
    [['--agents', '0'], /--agents/],
    [['--agents', 'two'], /--agents/],
    [['--agents', '1.5'], /--agents/],
    [['--port', '70000'], /--port/],
    [['--node-memory-mib', '-1'], /--node-memory-mib/],
    [['--token', ''], /--token/],
    [['--token', 'a,b'], /--token/],
    [['--read-token', ' '], /--read-token/],
    [['--token', 'same', '--read-token', 'same'], /--read-token must differ/],
    [['--http-port', '0'], /--http-port/],
    [['--http-port', '50051'], /--http-port must differ/],
    [['--hypervisor', 'xen'], /--hypervisor must be emulator or qemu/],
    [['--certs-dir', ''], /--certs-dir/],
    [['--supervise=yes'], /supervise/],
    [['--bogus'], /bogus/],
    [['extra'], /extra|positional/i],
  ])('rejects %j', (argv, pattern) => {
    expect(() => parseClusterArgs(argv)).toThrow(UsageError);
    expect(() => parseClusterArgs(argv)).toThrow(pattern);
  });
});
