import type { BackendStream } from '../../contracts/backend.js';

/**
 * The same stream, reporting once how it ended: `onEnd(err)` when its chunks throw, and
 * `onEnd(undefined)` when they end cleanly, when the consumer stops early or when it is
 * cancelled (the client left, or never read: the upstream worked as far as it went). Lets an
 * interceptor judge a stream by its whole life, not by its first event alone.
 */
export function onStreamEnd(stream: BackendStream, onEnd: (err: unknown) => void): BackendStream {
  let ended = false;
  const end = (err: unknown): void => {
    if (ended) return;
    ended = true;
    onEnd(err);
  };
  return {
    ...stream,
    usage: () => stream.usage(),
    chunks: watch(stream.chunks, end),
    cancel: () => {
      end(undefined);
      stream.cancel();
    },
  };
}

async function* watch(
  chunks: AsyncIterable<Buffer>,
  end: (err: unknown) => void,
): AsyncGenerator<Buffer> {
  try {
    yield* chunks;
  } catch (err) {
    end(err);
    throw err;
  } finally {
    end(undefined);
  }
}
