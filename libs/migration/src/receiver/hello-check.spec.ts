import { afterEach, describe, expect, it } from 'vitest';
import { FramePool, type VirtualMachine } from '@vmm/emulator';
import { makeIncomingVm } from '../testing/vm-fixture.js';
import type { HelloPayload } from '../wire/frame.js';
import { checkHello } from './hello-check.js';

const vms: VirtualMachine[] = [];
afterEach(() => {
  for (const vm of vms.splice(0)) if (vm.state !== 'stopped') vm.stop();
});

function incoming(): VirtualMachine {
  const vm = makeIncomingVm(new FramePool(), 'vm-1', 4); // 4 MiB, 2 vCPUs, image 'empty'
  vms.push(vm);
  return vm;
}

const hello: HelloPayload = { version: 1, maxVersion: 2, migrationId: 'mig-1', token: 'secret', pageCount: 1024, memoryMib: 4, image: 'empty', vcpus: 2 };

describe('checkHello', () => {
  it('agrees on a version for a HELLO that matches the prepared VM', () => {
    expect(checkHello({ ...hello, residentPages: 1024 }, { token: 'secret', migrationId: 'mig-1', vm: incoming() })).toBe(2);
  });

  it.each<[string, Partial<HelloPayload>, string, string]>([
    ['a wrong token', { token: 'guess' }, 'TOKEN_MISMATCH', 'token'],
    ['another migration', { migrationId: 'mig-2' }, 'PROTOCOL_ERROR', 'mig-2'],
    ['another page count', { pageCount: 2048 }, 'SPEC_MISMATCH', 'pageCount'],
    ['another memory size', { memoryMib: 8 }, 'SPEC_MISMATCH', 'memoryMib'],
    ['other vCPUs', { vcpus: 4 }, 'SPEC_MISMATCH', 'vcpus'],
    ['another image', { image: 'debian-12' }, 'SPEC_MISMATCH', 'image'],
    ['more resident pages than the VM has (it would pre-fault them)', { residentPages: 1025 }, 'SPEC_MISMATCH', 'residentPages'],
    ['a version range that does not meet ours', { version: 3, maxVersion: 4 }, 'PROTOCOL_ERROR', 'protocol versions'],
  ])('refuses %s', (_what, change, code, mention) => {
    const vm = incoming();
    expect(() => checkHello({ ...hello, ...change }, { token: 'secret', migrationId: 'mig-1', vm })).toThrow(
      expect.objectContaining({ code, message: expect.stringContaining(mention) }),
    );
    expect(vm.memory.residentPages).toBe(0);
  });
});
