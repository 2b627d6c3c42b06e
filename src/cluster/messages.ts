/**
 * The messages between the primary and its workers over the cluster IPC channel (#17). Every one
 * carries `sy: 1` so that other users of the channel (prom-client, Node's own cluster messages)
 * are told apart.
 */
export type ClusterMessage =
  /**
   * worker → primary: a question; the primary answers with `reply`. With `peer`, the primary asks
   * one other worker that is up and replies with its answer (no body when there is none).
   */
  | { sy: 1; t: 'req'; id: number; topic: string; body: unknown; peer?: true }
  /** worker → primary: hand to every other worker, answer once each applied it. */
  | {
      sy: 1;
      t: 'bcast';
      id: number;
      topic: string;
      body: unknown;
      retain?: true;
      required?: true;
    }
  /** worker → primary: its link listens (what the primary sends before this would be lost). */
  | { sy: 1; t: 'hello' }
  /** worker → primary: it has opened everything and applies broadcasts from now on. */
  | { sy: 1; t: 'up' }
  /** primary → worker: a question or a broadcast; the worker answers with `reply`. */
  | { sy: 1; t: 'call'; id: number; topic: string; body: unknown }
  /** either way: the answer to `req`, `bcast` or `call` number `id`. */
  | { sy: 1; t: 'reply'; id: number; body?: unknown; error?: string };

export function isClusterMessage(m: unknown): m is ClusterMessage {
  return typeof m === 'object' && m !== null && (m as { sy?: unknown }).sy === 1;
}

/** Environment a worker gets from the primary: its number and how many workers there are. */
export const WORKER_ID_ENV = 'SWITCHYARD_WORKER_ID';
export const WORKER_COUNT_ENV = 'SWITCHYARD_WORKERS';
