import type { IncomingMessage, ServerResponse } from 'node:http';
import type { Socket } from 'node:net';

/** What a connection knows of each of its requests. */
export interface ConnectionRequest {
  readonly req: IncomingMessage;
  readonly res: ServerResponse;
}

/** The requests of one connection whose lives have not ended, in arrival (pipeline) order. */
class Connection {
  readonly live = new Map<ConnectionRequest, () => void>();
  private idle: (() => void)[] = [];
  probe: NodeJS.Timeout | undefined;

  constructor(socket: Socket) {
    // A response queued behind a pipelined one never gets the socket, so it never emits
    // 'close' when the connection dies first (#13): its request ends with the connection.
    socket.once('close', () => {
      connections.delete(socket);
      clearTimeout(this.probe);
      this.idle = [];
      for (const end of [...this.live.values()]) end();
    });
  }

  leave(r: ConnectionRequest): void {
    this.live.delete(r);
    if (this.live.size > 0) return;
    const waiting = this.idle;
    this.idle = [];
    for (const fn of waiting) fn();
  }

  whenIdle(fn: () => void): void {
    if (this.live.size === 0) fn();
    else this.idle.push(fn);
  }
}

const connections = new WeakMap<Socket, Connection>();

/**
 * Adds a request to its connection; `end` runs if the connection closes before the request's
 * life is over. Returns the call that takes it off again, or undefined when the socket is
 * already closed (the request is over before it began).
 */
export function joinConnection(
  socket: Socket,
  r: ConnectionRequest,
  end: () => void,
): (() => void) | undefined {
  if (socket.closed) return undefined;
  let c = connections.get(socket);
  if (c === undefined) {
    c = new Connection(socket);
    connections.set(socket, c);
  }
  c.live.set(r, end);
  const joined = c;
  return () => joined.leave(r);
}

/** The requests on `socket` whose lives have not ended yet, oldest first. */
export function liveRequests(socket: Socket): ConnectionRequest[] {
  return [...(connections.get(socket)?.live.keys() ?? [])];
}

/** Runs `fn` once every request on `socket` has ended (at once when none is live). */
export function whenConnectionIdle(socket: Socket, fn: () => void): void {
  const c = connections.get(socket);
  if (c === undefined) fn();
  else c.whenIdle(fn);
}

const FIRST_PROBE_MS = 50;
const MAX_PROBE_MS = 1_000;

/**
 * The client sent its FIN while requests on `socket` are still being served. A half-close (it
 * still reads: the answers must go out, #13) and a full close (it is gone: its requests must
 * stop) look alike until something is written: a closed peer's kernel answers data with a reset,
 * which the next write then reports. So, until each answer's headers go out, the connection gets
 * a `100 Continue` interim answer now, after 50 ms, and then at doubling intervals up to 1 s.
 * HTTP/1.1 clients must skip unexpected 1xx answers (RFC 9110 §15.2); HTTP/1.0 ones must not
 * get any, so their requests are served to the end (or their deadline) whatever the FIN meant.
 */
export function probeAfterFin(socket: Socket): void {
  const c = connections.get(socket);
  if (c === undefined || c.probe !== undefined) return;
  let delay = FIRST_PROBE_MS;
  const tick = (): void => {
    c.probe = undefined;
    if (socket.destroyed || !socket.writable || c.live.size === 0) return;
    // The response being written now: queued ones wait for it.
    const current = [...c.live.keys()].find((r) => r.res.socket === socket);
    const { req, res } = current ?? {};
    if (req !== undefined && res !== undefined && !res.headersSent) {
      if (req.httpVersionMajor !== 1 || req.httpVersionMinor < 1) return;
      res.writeContinue();
    }
    c.probe = setTimeout(tick, delay);
    c.probe.unref();
    delay = Math.min(MAX_PROBE_MS, delay * 2);
  };
  tick();
}
