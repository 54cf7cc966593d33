import { ItemTable } from './item-table.js';

/** Node states: FREE (on the free list), IN_TREE (findable by checksum), RETIRED (unfindable, mappers left). */
const FREE = 0;
const IN_TREE = 1;
const RETIRED = 2;

/**
 * The stable tree: KSM pages (shared frames) keyed by checksum, with Linux's pages_shared / pages_sharing
 * accounting. Nodes are ids into typed arrays. A node does not list its mappers (Linux's hlist of rmap
 * items): each mapper's region records its node, and a mapper whose page no longer maps the node's frame
 * (COW broke the share) is detached when ksmd next visits it, as Linux's remove_rmap_item_from_tree does.
 */
export class StableTree {
  /** The KSM page's frame, per node. */
  frame = new Int32Array(64);
  /** The content checksum the node is filed under. */
  key = new Int32Array(64);
  /** Pages attached (mappers), per node. */
  sharers = new Int32Array(64);
  private state = new Uint8Array(64);
  private freeIds = new Int32Array(64);
  private freeCount = 0;
  private highWater = 0;
  private readonly table = new ItemTable();
  private readonly byFrame = new Map<number, number>();
  private shared = 0;
  private sharing = 0;
  // max_page_sharing chains: nodes of one content, made because the others were full. Chain ids are
  // never reused (a freed node's id is), so a stale id cannot join unrelated contents.
  private chainOf = new Float64Array(64); // 0 = not in a chain
  private readonly chainSize = new Map<number, number>();
  private chainSeq = 0;
  private chains = 0;
  private dups = 0;

  /** KSM pages in use. */
  get pagesShared(): number {
    return this.shared;
  }

  /** Mappers beyond the first of each KSM page. */
  get pagesSharing(): number {
    return this.sharing;
  }

  /** Contents with several KSM pages (max_page_sharing reached): Linux's stable_node_chains. */
  get nodeChains(): number {
    return this.chains;
  }

  /** KSM pages in those chains: Linux's stable_node_dups. */
  get nodeDups(): number {
    return this.dups;
  }

  /** Records that `id` was made for the same content as `twin`, which was full. */
  linkDup(id: number, twin: number): void {
    let chain = this.chainOf[twin];
    if (chain === 0) {
      chain = ++this.chainSeq;
      this.chainOf[twin] = chain;
      this.chainSize.set(chain, 1);
    }
    this.chainOf[id] = chain;
    const size = (this.chainSize.get(chain) as number) + 1;
    this.chainSize.set(chain, size);
    if (size === 2) {
      this.chains++;
      this.dups += 2;
    } else {
      this.dups++;
    }
  }

  /** First slot of nodes filed under `key` (walk with next/nodeAt). */
  first(key: number): number {
    return this.table.first(key);
  }

  next(key: number, slot: number): number {
    return this.table.next(key, slot);
  }

  nodeAt(slot: number): number {
    return this.table.valueAt(slot);
  }

  /**
   * A new KSM page on `frame`, with no mappers yet. If an older node still names that frame, every mapper
   * of it has left (the frame was freed and reused): the old node is retired so it is never found again.
   */
  create(key: number, frame: number): number {
    const old = this.byFrame.get(frame);
    if (old !== undefined) this.retire(old);
    const id = this.freeCount > 0 ? this.freeIds[--this.freeCount] : this.newId();
    this.frame[id] = frame;
    this.key[id] = key;
    this.sharers[id] = 0;
    this.state[id] = IN_TREE;
    this.table.insert(key, id);
    this.byFrame.set(frame, id);
    return id;
  }

  /** One more page maps the node's frame. */
  attach(id: number): void {
    if (this.sharers[id]++ === 0) this.shared++;
    else this.sharing++;
  }

  /** One page fewer; the node is freed with its last mapper. */
  detach(id: number): void {
    if (--this.sharers[id] > 0) {
      this.sharing--;
      return;
    }
    this.shared--;
    if (this.state[id] === IN_TREE) this.unfile(id);
    if (this.chainOf[id] !== 0) this.unchain(id);
    this.state[id] = FREE;
    this.freeIds[this.freeCount++] = id;
  }

  /** Makes the node unfindable; it is freed when its last mapper detaches. */
  retire(id: number): void {
    if (this.state[id] !== IN_TREE) return;
    this.unfile(id);
    this.state[id] = RETIRED;
  }

  isRetired(id: number): boolean {
    return this.state[id] === RETIRED;
  }

  clear(): void {
    this.table.clear();
    this.byFrame.clear();
    this.state.fill(FREE);
    this.freeCount = 0;
    this.highWater = 0;
    this.shared = 0;
    this.sharing = 0;
    this.chainOf.fill(0);
    this.chainSize.clear();
    this.chains = 0;
    this.dups = 0;
  }

  private unchain(id: number): void {
    const chain = this.chainOf[id];
    this.chainOf[id] = 0;
    const size = (this.chainSize.get(chain) as number) - 1;
    if (size === 0) this.chainSize.delete(chain);
    else this.chainSize.set(chain, size);
    if (size >= 2) this.dups--;
    else if (size === 1) {
      this.chains--;
      this.dups -= 2; // the one left is no longer a dup
    }
  }

  private unfile(id: number): void {
    this.table.remove(this.key[id], id);
    if (this.byFrame.get(this.frame[id]) === id) this.byFrame.delete(this.frame[id]);
  }

  private newId(): number {
    const id = this.highWater++;
    if (id === this.frame.length) {
      const cap = id * 2;
      this.frame = grow(this.frame, cap);
      this.key = grow(this.key, cap);
      this.sharers = grow(this.sharers, cap);
      this.state = grow(this.state, cap);
      this.freeIds = grow(this.freeIds, cap);
      this.chainOf = grow(this.chainOf, cap);
    }
    return id;
  }
}

function grow<T extends Int32Array | Uint8Array | Float64Array>(a: T, length: number): T {
  const b = new (a.constructor as new (n: number) => T)(length);
  b.set(a);
  return b;
}
