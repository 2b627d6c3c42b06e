import type { JsonObject } from './json.js';

/** One stored Response (`store: true`), owned by a tenant and, when known, a user. */
export interface StoredResponse {
  /** `resp_...`. */
  readonly id: string;
  readonly tenant: string;
  /** Whose conversation it is (`x-switchyard-user` or the body's `user`): consent purges by it. */
  readonly user: string | undefined;
  /** Wall ms. */
  readonly createdAt: number;
  /** Wall ms after which it is gone (retention). */
  readonly expiresAt: number;
  /** The Response object as it was answered. */
  readonly response: JsonObject;
  /** The request's own input items, with ids (`GET /v1/responses/{id}/input_items`). */
  readonly input: readonly JsonObject[];
  /**
   * The whole conversation the answer was made from (the previous responses' inputs and outputs,
   * then this input): a follow-up's `previous_response_id` prepends it and this output.
   */
  readonly context: readonly JsonObject[];
}

/**
 * Where stored Responses live (#16): the SQLite state store by default, PostgreSQL when
 * configured. Every read is by tenant: another tenant's id is as absent as an unknown one.
 * Every implementation passes `test/contract/response-store.contract.ts`.
 */
export interface ResponseStore {
  put(r: StoredResponse): Promise<void>;
  /** The response, unless absent, another tenant's, or expired at `now` (wall ms). */
  get(tenant: string, id: string, now: number): Promise<StoredResponse | undefined>;
  /** Deletes it; false when there was nothing of this tenant's to delete. */
  delete(tenant: string, id: string): Promise<boolean>;
  /** Deletes every response of a user (consent revoked); returns how many. */
  purgeUser(tenant: string, user: string): Promise<number>;
  /** Deletes every response expired at `now`; returns how many. */
  sweep(now: number): Promise<number>;
  close(): Promise<void>;
}
