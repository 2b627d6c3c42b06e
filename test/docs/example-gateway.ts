import {
  copyFileSync,
  mkdtempSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { Logger as Pino } from 'pino';
import { startGateway, type Gateway } from '../../src/main.js';
import { createLogger } from '../../src/observability/logger.js';
import { startSimulator, type Simulator } from '../../src/simulator/upstream-simulator.js';

export const EXAMPLE_DIR = join(import.meta.dirname, '../../examples/superapp');
export const EXAMPLE_CONFIG = join(EXAMPLE_DIR, 'switchyard.yaml');
/** Where `npm start` runs the simulated upstream, as the example config names it. */
const DEMO_UPSTREAM = 'http://127.0.0.1:9100';

export interface ExampleGateway {
  readonly gateway: Gateway;
  readonly simulator: Simulator;
  /** The gateway's base URL (`http://127.0.0.1:<port>`). */
  readonly url: string;
  /** The temp directory the example runs in (its `data/` lands here). */
  readonly dir: string;
  close(): Promise<void>;
}

/**
 * Runs `npm start`'s example as it ships, but hermetic: the simulated upstream on port 0, the
 * gateway on port 0, and the config copied into a temp directory (its demo models and secret
 * linked in) so the SQLite files and vector data it writes never touch the checkout.
 */
export async function startExampleGateway(
  logger?: Pino,
  /** Changes to the config text before it is written (tests of the example itself). */
  edit: (text: string) => string = (t) => t,
): Promise<ExampleGateway> {
  const simulator = await startSimulator({ port: 0 });
  const dir = mkdtempSync(join(tmpdir(), 'switchyard-example-'));
  try {
    const text = edit(readFileSync(EXAMPLE_CONFIG, 'utf8')).replaceAll(
      DEMO_UPSTREAM,
      simulator.url,
    );
    writeFileSync(join(dir, 'switchyard.yaml'), text);
    copyFileSync(join(EXAMPLE_DIR, 'demo-secret.txt'), join(dir, 'demo-secret.txt'));
    symlinkSync(join(EXAMPLE_DIR, 'models'), join(dir, 'models'), 'dir');
    const gateway = await startGateway({
      configPath: join(dir, 'switchyard.yaml'),
      port: 0,
      watch: false,
      logger: logger ?? createLogger('silent'),
    });
    return {
      gateway,
      simulator,
      url: gateway.url,
      dir,
      close: async () => {
        await gateway.close();
        await simulator.close();
        rmSync(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    await simulator.close();
    rmSync(dir, { recursive: true, force: true });
    throw err;
  }
}
