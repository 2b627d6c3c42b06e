/** Time source. `now()` is monotonic milliseconds (for deadlines and durations); `wall()` is epoch ms. */
export interface Clock {
  now(): number;
  wall(): number;
}

export const systemClock: Clock = {
  now: () => performance.now(),
  wall: () => Date.now(),
};
