import type { cluster } from '@vmm/proto';
import { paint } from './colours.js';
import { renderTable } from './table.js';
import { formatMib } from './units.js';

/** ListImages as a table: presets marked, unused ones greyed. */
export function renderImagesTable(images: readonly cluster.Image[]): string {
  if (images.length === 0) return 'No images.\n';
  return renderTable(
    ['IMAGE', 'SIZE', 'PRESET', 'VMS'],
    images.map((i) => [i.name, formatMib(Number(i.sizeMib)), i.preset ? 'yes' : 'no', i.vmCount > 0 ? String(i.vmCount) : paint.gray('0')]),
  );
}
