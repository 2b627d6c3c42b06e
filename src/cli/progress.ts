import { MultiBar, Presets } from 'cli-progress';
import type { CliIo } from './io.js';

/**
 * Progress of long CLI work (#14). On a terminal, cli-progress draws one bar per task, redrawn in
 * place (several at once when shards build in parallel). Elsewhere (logs, CI, tests) each task
 * prints plain lines: a counted task at every tenth, a staged task at every new stage.
 */
export interface Progress {
  /** A counted task: call with how much is done of how much. */
  bar(label: string): (done: number, total: number) => void;
  /** A task in named stages with an overall percentage. */
  stages(label: string): (stage: string, percent: number) => void;
  /** Draws the final state and gives the terminal back; call once the work is over. */
  stop(): void;
}

export function createProgress(io: CliIo): Progress {
  return io.tty && io.errStream !== undefined ? terminalProgress(io.errStream) : plainProgress(io);
}

function terminalProgress(stream: NodeJS.WriteStream): Progress {
  const multi = new MultiBar(
    { stream, hideCursor: true, clearOnComplete: false, etaBuffer: 50 },
    Presets.shades_classic,
  );
  return {
    bar: (label) => {
      let b: ReturnType<MultiBar['create']> | undefined;
      return (done, total) => {
        b ??= multi.create(
          total,
          0,
          { label },
          {
            format: '{label} [{bar}] {percentage}% {value}/{total} eta {eta_formatted}',
          },
        );
        b.setTotal(total);
        b.update(done);
      };
    },
    stages: (label) => {
      let b: ReturnType<MultiBar['create']> | undefined;
      return (stage, percent) => {
        b ??= multi.create(
          100,
          0,
          { label, stage },
          {
            format: '{label} [{bar}] {percentage}% {stage}',
          },
        );
        b.update(percent, { stage });
      };
    },
    stop: () => multi.stop(),
  };
}

function plainProgress(io: CliIo): Progress {
  return {
    bar: (label) => {
      const started = performance.now();
      let lastTenth = -1;
      return (done, total) => {
        const ratio = total === 0 ? 1 : done / total;
        const tenth = Math.floor(ratio * 10);
        if (tenth === lastTenth) return;
        lastTenth = tenth;
        const filled = Math.round(ratio * 30);
        const secs = (performance.now() - started) / 1000;
        const rate = secs > 0 ? Math.round(done / secs) : 0;
        io.err(
          `${label} [${'#'.repeat(filled)}${'.'.repeat(30 - filled)}] ${String(Math.round(ratio * 100)).padStart(3)}% ${done}/${total} ${rate}/s\n`,
        );
      };
    },
    stages: () => {
      let last = '';
      return (stage, percent) => {
        if (stage !== last) io.err(`[${String(percent).padStart(3)}%] ${stage}\n`);
        last = stage;
      };
    },
    stop: () => undefined,
  };
}
