/**
 * How replicas share config changes (#17 item 4): a channel holds one group's desired config and
 * tells every replica when it changes. Implementation: NATS JetStream key-value
 * (`state/nats-config-channel`). A replica validates what it receives exactly as it validates
 * its own file, and keeps serving its last good config when it refuses one.
 */

/** One config version as published to a group. */
export interface PublishedConfig {
  /** `configDigest` of `text`. */
  readonly digest: string;
  /** The config file's text (secrets are references; each replica resolves its own). */
  readonly text: string;
  /** The replica that published it. */
  readonly origin: string;
  /** Wall-clock epoch ms of the publication. */
  readonly at: number;
}

export interface ConfigChannelHandlers {
  /**
   * After every (re)connection, before the first `desired`: the replica publishes what it
   * changed while away, or its own new file.
   */
  connected(): Promise<void>;
  /** The group's desired config: the current one after connecting, then each change. */
  desired(config: PublishedConfig): void;
}

export interface ConfigChannel {
  /** Starts connecting (in the background: the gateway serves its own file meanwhile). */
  start(handlers: ConfigChannelHandlers): void;
  /** Makes `config` the group's desired config; rejects when the channel is unreachable. */
  publish(config: PublishedConfig): Promise<void>;
  /** Whether `digest` was ever published to the group (a replica's file that is not new). */
  published(digest: string): Promise<boolean>;
  readonly connected: boolean;
  close(): Promise<void>;
}
