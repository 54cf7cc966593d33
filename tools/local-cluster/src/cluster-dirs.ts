import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import os from 'node:os';
import path from 'node:path';

/**
 * The files of one local cluster, all under one temporary directory that stop() removes, so that a
 * restarted process finds what its predecessor left (Redis' append-only file, an agent's fences):
 *   <root>/redis/             a private redis-server's data
 *   <root>/agents/<node-id>/  each agent's STATE_DIR
 *   <root>/certs/             the certificates, unless --certs-dir names another place (kept then)
 */
export interface ClusterDirs {
  readonly root: string;
  readonly redisDataDir: string;
  readonly certsDir: string;
  /** False when the caller named the certs directory: remove() leaves it. */
  readonly ownsCertsDir: boolean;
  /** Creates (if needed) and returns the STATE_DIR of `nodeId`. */
  agentStateDir(nodeId: string): Promise<string>;
  remove(): Promise<void>;
}

export async function makeClusterDirs(options: { certsDir?: string } = {}): Promise<ClusterDirs> {
  const root = await mkdtemp(path.join(os.tmpdir(), 'vmm-cluster-'));
  const ownsCertsDir = options.certsDir === undefined;
  const certsDir = options.certsDir === undefined ? path.join(root, 'certs') : path.resolve(options.certsDir);
  const remove = () => rm(root, { recursive: true, force: true });
  try {
    await mkdir(certsDir, { recursive: true });
  } catch (err) {
    await remove();
    throw err;
  }
  return {
    root,
    redisDataDir: path.join(root, 'redis'),
    certsDir,
    ownsCertsDir,
    async agentStateDir(nodeId) {
      const dir = path.join(root, 'agents', nodeId);
      await mkdir(dir, { recursive: true });
      return dir;
    },
    remove,
  };
}
