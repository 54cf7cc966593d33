/** ListImages: the presets and every image in use, with the number of VMs using each. */
import { Inject, Injectable } from '@nestjs/common';
import type { cluster } from '@vmm/proto';
import { NodeRepository } from '../redis/node.repository.js';
import { imageList } from './image-catalog.js';

@Injectable()
export class ImageService {
  constructor(@Inject(NodeRepository) private readonly nodes: NodeRepository) {}

  /**
   * The counts come from each node's image index (node-images:<id>, kept by the placement and
   * migration scripts with the VM's allocation), so a VM counts once, on the node that holds it.
   */
  async list(): Promise<cluster.ListImagesResponse> {
    const counts = new Map<string, number>();
    for (const node of await this.nodes.list()) {
      for (const [image, count] of Object.entries(node.imageCounts)) counts.set(image, (counts.get(image) ?? 0) + count);
    }
    return { images: imageList(counts) };
  }
}
