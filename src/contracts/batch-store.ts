import type { JsonObject } from './json.js';

/** An uploaded or generated file (`/v1/files`), owned by a tenant. */
export interface StoredFile {
  /** `file-...`. */
  readonly id: string;
  readonly tenant: string;
  readonly filename: string;
  /** `batch` (uploaded), `batch_output` or `batch_error` (written by a batch). */
  readonly purpose: string;
  readonly bytes: number;
  /** Epoch seconds. */
  readonly createdAt: number;
  /**
   * Epoch seconds from which the file is gone (`expires_after`); null: kept until deleted. An
   * expired file is answered as absent, and `sweepFiles` deletes it.
   */
  readonly expiresAt: number | null;
}

/** OpenAI's Batch statuses. */
export type BatchStatus =
  | 'validating'
  | 'failed'
  | 'in_progress'
  | 'finalizing'
  | 'completed'
  | 'expired'
  | 'cancelling'
  | 'cancelled';

/** Statuses a runner still works on. */
export const ACTIVE_STATUSES: readonly BatchStatus[] = ['in_progress', 'finalizing', 'cancelling'];

/** A batch: its owner, status and the OpenAI Batch object as it stands. */
export interface StoredBatch {
  /** `batch_...`. */
  readonly id: string;
  readonly tenant: string;
  readonly status: BatchStatus;
  /** Epoch seconds (listing order). */
  readonly createdAt: number;
  /** The Batch object answered by `GET /v1/batches/{id}` (its `status` is `status`). */
  readonly batch: JsonObject;
}

/** One line of a batch once claimed by a runner: `started`, then `done` with its result. */
export interface BatchLine {
  readonly batchId: string;
  /** The line's 0-based position in the input file. */
  readonly index: number;
  readonly customId: string;
  readonly state: 'started' | 'done';
  /** Wall ms the line was claimed. */
  readonly startedAt: number;
  /** Whether the result goes to the output file (true) or the error file (false). */
  readonly ok: boolean;
  /** The output or error line (OpenAI's batch line format); undefined while started. */
  readonly result: JsonObject | undefined;
  /** What the line's model calls cost (the cost ledger has the same). */
  readonly cost: number;
}

/** What a finished line carries. */
export interface LineOutcome {
  readonly ok: boolean;
  readonly result: JsonObject;
  readonly cost: number;
}

/**
 * Files and batches (#16): the SQLite state store by default, PostgreSQL when configured. Every
 * read by a client is by tenant: another tenant's id is as absent as an unknown one. A line is
 * claimed (`started`) before its model call and committed (`done`) after, each durably: a line is
 * claimed at most once per batch, whichever runner or replica asks. Every implementation passes
 * `test/contract/batch-store.contract.ts`.
 */
export interface BatchStore {
  putFile(file: StoredFile, content: Buffer): Promise<void>;
  getFile(tenant: string, id: string): Promise<StoredFile | undefined>;
  fileContent(tenant: string, id: string): Promise<Buffer | undefined>;
  /** The tenant's files, newest first. */
  listFiles(tenant: string): Promise<StoredFile[]>;
  /** False when there was nothing of this tenant's to delete. */
  deleteFile(tenant: string, id: string): Promise<boolean>;
  /**
   * Deletes every file expired at `now` (epoch seconds), bytes and row, except the input file of
   * a batch still active (its runner reads it again after a restart): that one goes once the
   * batch ends. Returns how many were deleted.
   */
  sweepFiles(now: number): Promise<number>;

  putBatch(batch: StoredBatch): Promise<void>;
  getBatch(tenant: string, id: string): Promise<StoredBatch | undefined>;
  /** The tenant's batches, newest first. */
  listBatches(tenant: string): Promise<StoredBatch[]>;
  /** Every batch a runner still has work on: in_progress, finalizing or cancelling, oldest first. */
  activeBatches(): Promise<StoredBatch[]>;
  /**
   * Replaces the batch when its status is one of `from` (compare and set); with `files`, the
   * files are written in the same transaction. False when the status had moved on.
   */
  updateBatch(
    next: StoredBatch,
    from: readonly BatchStatus[],
    files?: readonly { readonly file: StoredFile; readonly content: Buffer }[],
  ): Promise<boolean>;

  /** Claims a line (`started`); false when it was claimed before (by anyone). */
  claimLine(batchId: string, index: number, customId: string, now: number): Promise<boolean>;
  /** Records a started line's outcome; false when it was no longer `started`. */
  commitLine(batchId: string, index: number, outcome: LineOutcome): Promise<boolean>;
  /** Gives back a started line whose model call was never made (admission refused it). */
  releaseLine(batchId: string, index: number): Promise<void>;
  /** Every claimed line of a batch, by index. */
  lines(batchId: string): Promise<BatchLine[]>;
  close(): Promise<void>;
}
