/**
 * bench:faults (issue #13): each fault scenario is one module in bench/faults/ exporting a
 * `FaultScenario`. `bench/faults.ts` runs them in turn (or those named on the command line),
 * prints every target with pass/fail and writes `bench/results/faults-latest.json`.
 */
export interface FaultTargetResult {
  /** What is measured, in words: `attempts per request at 5 rps, breaker off`. */
  readonly name: string;
  /** The target as the issue states it: `<= 1.10`. */
  readonly target: string;
  /** What this run measured, formatted with its unit: `1.04`, `99.95%`, `12.3 MB`. */
  readonly value: string;
  readonly pass: boolean;
  /** Counts behind the value (tries, failures, ...), for the results file. */
  readonly detail?: Readonly<Record<string, number | string>>;
}

export interface FaultScenarioContext {
  /** The repository root (the built gateway is at dist/cli/index.js). */
  readonly root: string;
  /** A short run for smoke checks (`--quick`): fewer tries, same targets. */
  readonly quick: boolean;
  /** Progress lines, printed as the scenario runs. */
  log(line: string): void;
}

export interface FaultScenario {
  /** Short id used on the command line: `malformed`, `retry-budget`, ... */
  readonly id: string;
  readonly title: string;
  run(ctx: FaultScenarioContext): Promise<readonly FaultTargetResult[]>;
}
