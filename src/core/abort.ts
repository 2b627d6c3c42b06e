/**
 * An AbortController for per-request use, whose signal is a plain `EventTarget` subclass.
 *
 * Why not Node's own: on Node 20 every `AbortSignal` survives the young-generation GC and is
 * promoted to the old generation, with everything its listeners close over, until the next full
 * GC (measured: 300k controllers promote ~110 MB and take 1.3 s; this class promotes nothing
 * and takes 0.1 s). A gateway makes several per request, so under load the old generation
 * filled with dead signals and the process grew by tens of MB before each full GC.
 *
 * The signal implements the whole `AbortSignal` instance interface, so Node APIs that take a
 * signal (they check for `aborted` and listen with `addEventListener`) and undici accept it.
 * `AbortSignal.any()` does not: it relies on Node's private bookkeeping; nothing here uses it.
 */
export class RequestAbortSignal extends EventTarget implements AbortSignal {
  aborted = false;
  reason: unknown = undefined;
  onabort: ((this: AbortSignal, ev: Event) => unknown) | null = null;

  throwIfAborted(): void {
    if (this.aborted) throw this.reason;
  }

  /** @internal Called by the owning controller. */
  fire(reason: unknown): void {
    if (this.aborted) return;
    this.aborted = true;
    this.reason = reason;
    const event = new Event('abort');
    this.onabort?.call(this, event);
    this.dispatchEvent(event);
  }
}

export class RequestAbortController implements AbortController {
  readonly signal = new RequestAbortSignal();

  abort(reason?: unknown): void {
    this.signal.fire(
      reason === undefined ? new DOMException('This operation was aborted', 'AbortError') : reason,
    );
  }
}
