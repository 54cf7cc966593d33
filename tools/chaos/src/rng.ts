/** The run's one source of randomness, seeded (--seed), so that a run can be repeated. */
import { Xoshiro128 } from '@vmm/emulator/prng';

export class Rng {
  private readonly g: Xoshiro128;

  constructor(seed: number) {
    this.g = new Xoshiro128(seed);
  }

  /** A float in [0, 1). */
  float(): number {
    return this.g.next() / 2 ** 32;
  }

  /** An integer in [min, max]. */
  int(min: number, max: number): number {
    return min + Math.floor(this.float() * (max - min + 1));
  }

  chance(p: number): boolean {
    return this.float() < p;
  }

  pick<T>(items: readonly T[]): T {
    return items[Math.floor(this.float() * items.length)]!;
  }
}
