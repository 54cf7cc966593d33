import path from 'node:path';
import { fileURLToPath } from 'node:url';
import swc from 'unplugin-swc';
import { defineConfig } from 'vitest/config';

const root = path.dirname(fileURLToPath(import.meta.url));

// Workspace packages resolve to their TypeScript sources, so unit tests need no build.
// Integration tests start the built apps (dist/) as real processes: `npm test` builds first.
const sourceAliases = [
  { find: /^@vmm\/proto$/, replacement: path.join(root, 'proto/src/index.ts') },
  { find: /^@vmm\/proto\/(.*)$/, replacement: path.join(root, 'proto/src/$1.ts') },
  { find: /^@vmm\/local-cluster$/, replacement: path.join(root, 'tools/local-cluster/src/index.ts') },
  { find: /^@vmm\/local-cluster\/(.*)$/, replacement: path.join(root, 'tools/local-cluster/src/$1.ts') },
  ...['emulator', 'migration', 'ksm', 'qemu', 'tls', 'logging'].flatMap((lib) => [
    { find: new RegExp(`^@vmm/${lib}$`), replacement: path.join(root, `libs/${lib}/src/index.ts`) },
    { find: new RegExp(`^@vmm/${lib}/(.*)$`), replacement: path.join(root, `libs/${lib}/src/$1.ts`) },
  ]),
];

export default defineConfig({
  // Nest needs decorator metadata; swc emits it from tsconfig's emitDecoratorMetadata (docs/stack.md §3).
  oxc: false,
  esbuild: false,
  plugins: [swc.vite({ tsconfigFile: path.join(root, 'tsconfig.base.json') })],
  resolve: { alias: sourceAliases },
  test: {
    projects: [
      {
        extends: true,
        test: {
          name: 'unit',
          sequence: { groupOrder: 0 },
          include: ['proto/src/**/*.spec.ts', 'libs/*/src/**/*.spec.ts', 'apps/*/src/**/*.spec.ts', 'tools/*/src/**/*.spec.ts'],
          testTimeout: 30_000,
        },
      },
      {
        extends: true,
        test: {
          name: 'integration',
          include: ['test/**/*.test.ts'],
          exclude: ['test/compose-podman.test.ts'],
          globalSetup: ['test/support/global-setup.ts'],
          testTimeout: 120_000,
          hookTimeout: 120_000,
          // Two cores run everything: one integration file at a time, each starting its own processes,
          // and only after the unit project has finished (groups run in order), so that timing-sensitive
          // checks (NOT_READY within 3 intervals) do not compete with unit tests for the CPU.
          fileParallelism: false,
          sequence: { groupOrder: 1 },
        },
      },
      {
        extends: true,
        test: {
          // Real QEMU guests under TCG (libs/qemu/test): slow, CPU-heavy, so alone and after the rest.
          name: 'qemu',
          include: ['libs/*/test/**/*.test.ts'],
          testTimeout: 240_000,
          hookTimeout: 240_000,
          fileParallelism: false,
          sequence: { groupOrder: 2 },
        },
      },
      {
        extends: true,
        test: {
          // The compose file under podman (test/compose-podman.test.ts): builds the image, runs five
          // containers; minutes, not seconds, so alone and last. Its hooks set their own timeouts.
          name: 'compose',
          include: ['test/compose-podman.test.ts'],
          testTimeout: 300_000,
          hookTimeout: 900_000,
          fileParallelism: false,
          sequence: { groupOrder: 3 },
        },
      },
    ],
  },
});
