import { InvalidArgumentError } from 'commander';

/** An option parser for a whole number in [min, max] (commander reports a bad one: exit 2). */
export function wholeNumber(min: number, max: number): (value: string) => number {
  return (value) => {
    const n = /^\d+$/.test(value.trim()) ? Number(value) : NaN;
    if (!Number.isSafeInteger(n) || n < min || n > max)
      throw new InvalidArgumentError(`It must be a whole number from ${min} to ${max}.`);
    return n;
  };
}

export const portNumber = wholeNumber(0, 65_535);

/** An option parser for a finite number > 0 (or >= 0 with `zero`). */
export function positiveNumber(zero = false): (value: string) => number {
  return (value) => {
    const n = value.trim() === '' ? NaN : Number(value);
    if (!Number.isFinite(n) || n < 0 || (n === 0 && !zero))
      throw new InvalidArgumentError(`It must be a number ${zero ? '>= 0' : '> 0'}.`);
    return n;
  };
}

/** `--meta k=v` (repeatable): collects into a record. */
export function keyValue(
  value: string,
  previous: Record<string, string> = {},
): Record<string, string> {
  const i = value.indexOf('=');
  if (i <= 0) throw new InvalidArgumentError('It must be k=v.');
  return { ...previous, [value.slice(0, i)]: value.slice(i + 1) };
}

/** `--workers <n|auto>`: a count of worker processes from 1 to 1024, or `auto` (one per core). */
export function workerCount(value: string): number | 'auto' {
  if (value.trim() === 'auto') return 'auto';
  try {
    return wholeNumber(1, 1024)(value);
  } catch {
    throw new InvalidArgumentError('It must be a whole number from 1 to 1024, or auto.');
  }
}
