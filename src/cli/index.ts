#!/usr/bin/env -S node --max-semi-space-size=8 --no-wasm-dynamic-tiering --no-wasm-tier-up
import { runCli } from './program.js';

// A command that keeps running (serve, simulate) resolves 0 and the process lives on; any other
// exit code ends the process at once (a half-started gateway must not keep it alive).
const code = await runCli(process.argv.slice(2));
if (code !== 0) process.exit(code);
