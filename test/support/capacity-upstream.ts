import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';

/**
 * An upstream of known capacity: `slots` requests at a time, `serviceMs` each, the rest wait
 * FIFO (capacity `slots / serviceMs` per ms). Every answer is the same chat completion. Used by
 * overload tests and `bench:overload`.
 */
export interface CapacityUpstream {
  readonly url: string;
  /** Requests answered so far. */
  served(): number;
  close(): Promise<void>;
}

export async function startCapacityUpstream(
  slots: number,
  serviceMs: number,
  answer: Buffer = Buffer.from(
    JSON.stringify({
      id: 'x',
      object: 'chat.completion',
      created: 1,
      model: 'm',
      choices: [{ index: 0, message: { role: 'assistant', content: 'hi' }, finish_reason: 'stop' }],
      usage: { prompt_tokens: 5, completion_tokens: 1, total_tokens: 6 },
    }),
  ),
): Promise<CapacityUpstream> {
  let busy = 0;
  let served = 0;
  const waiting: ServerResponse[] = [];
  const serve = (res: ServerResponse): void => {
    if (res.destroyed) {
      // The caller left while it waited: its slot goes to the next one at once.
      const next = waiting.shift();
      if (next !== undefined) serve(next);
      return;
    }
    busy++;
    setTimeout(() => {
      if (!res.destroyed) {
        res.writeHead(200, { 'content-type': 'application/json', 'content-length': answer.length });
        res.end(answer);
        served++;
      }
      busy--;
      const next = waiting.shift();
      if (next !== undefined) serve(next);
    }, serviceMs);
  };
  const server = createServer({ keepAliveTimeout: 60_000 }, (req: IncomingMessage, res) => {
    req.resume();
    req.on('end', () => {
      if (busy < slots) serve(res);
      else waiting.push(res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    served: () => served,
    close: () =>
      new Promise((r) => {
        server.closeAllConnections();
        server.close(() => r());
      }),
  };
}
