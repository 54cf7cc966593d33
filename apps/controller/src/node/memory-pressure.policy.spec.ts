import { describe, expect, it } from 'vitest';
import { memoryPressure, staysUnderHighWatermark } from './memory-pressure.policy.js';

const MIB = 1024 * 1024;
const W = { highPercent: 90, lowPercent: 80 };
const node = (usedMib: number, leavingMib = 0) => ({ memoryMib: 1000, memoryUsedBytes: usedMib * MIB, leavingMib });

describe('memoryPressure (hysteresis)', () => {
  it('starts only above the high watermark, aiming at the low one', () => {
    expect(memoryPressure(node(900), false, W)).toEqual({ relieving: false, goalMib: 0, stepMib: 0 });
    // The first step covers what is above high (the urgent part); the goal is the low watermark.
    expect(memoryPressure(node(950), false, W)).toEqual({ relieving: true, goalMib: 150, stepMib: 50 });
  });

  it('keeps going between the watermarks once started, and stops at or below the low one', () => {
    expect(memoryPressure(node(850), true, W)).toEqual({ relieving: true, goalMib: 50, stepMib: 50 });
    expect(memoryPressure(node(850), false, W).relieving).toBe(false);
    expect(memoryPressure(node(800), true, W)).toEqual({ relieving: false, goalMib: 0, stepMib: 0 });
  });

  it('counts memory already leaving toward the goal', () => {
    expect(memoryPressure(node(950, 100), false, W)).toEqual({ relieving: true, goalMib: 50, stepMib: 50 });
    expect(memoryPressure(node(980, 20), false, W)).toEqual({ relieving: true, goalMib: 160, stepMib: 60 });
    expect(memoryPressure(node(950, 200), false, W).goalMib).toBeLessThanOrEqual(0);
  });

  it('takes other watermarks', () => {
    expect(memoryPressure(node(700), false, { highPercent: 60, lowPercent: 50 })).toEqual({ relieving: true, goalMib: 200, stepMib: 100 });
  });
});

describe('staysUnderHighWatermark', () => {
  it('adds the VM to what the target already uses', () => {
    expect(staysUnderHighWatermark({ memoryMib: 1000, memoryUsedBytes: 800 * MIB }, 100, 90)).toBe(true);
    expect(staysUnderHighWatermark({ memoryMib: 1000, memoryUsedBytes: 800 * MIB }, 101, 90)).toBe(false);
  });
});
