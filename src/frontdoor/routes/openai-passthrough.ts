import type { JsonPassOperation } from '../../contracts/backend.js';
import type { JsonObject } from '../../contracts/json.js';
import type { RequestContext } from '../context.js';
import { readUpload } from '../multipart.js';
import { validatePassThrough, validateUploadModel } from '../openai-fields.js';
import { serveDirect } from './openai.js';

/**
 * The OpenAI pass-through routes (#16 part 4): each is one direct call through the model-call
 * pipeline (auth, quotas, admission, cost and record like chat), routed by its `model` to an
 * `openai` model whose `operations` list the operation; another model gets 400
 * SY_ERR_OPERATION_UNSUPPORTED.
 */
function passJson(op: JsonPassOperation, streamed: (body: JsonObject) => boolean) {
  return async (ctx: RequestContext): Promise<void> => {
    const body = await ctx.readJson();
    validatePassThrough(op, body);
    return serveDirect(ctx, op, body['model'] as string, body, streamed(body));
  };
}

/** `POST /v1/completions` (legacy completions), streamed (SSE) or not. */
export const completions = passJson('completions', (b) => b['stream'] === true);
/** `POST /v1/moderations`. */
export const moderations = passJson('moderations', () => false);
/** `POST /v1/images/generations`. */
export const imageGenerations = passJson('images', () => false);
/** `POST /v1/audio/speech`: the audio bytes are streamed back as the upstream sends them. */
export const audioSpeech = passJson('speech', () => true);

/**
 * `POST /v1/audio/transcriptions`: a multipart upload. Only its text fields are parsed (the
 * `model` routes it); the file is streamed to the upstream under `server.limits.upload_bytes`.
 */
export async function audioTranscriptions(ctx: RequestContext): Promise<void> {
  const cap = ctx.runtime.snapshot.config.server.limits.upload_bytes;
  const upload = readUpload(ctx.req, cap, () => ctx.sendContinue());
  try {
    await upload.ready;
    const name = validateUploadModel(upload.fields['model']);
    const body: JsonObject = { ...upload.fields };
    await serveDirect(ctx, 'transcriptions', name, body, false, upload);
  } catch (err) {
    // Over the cap or cut by the client mid-way: that, not the upstream's broken request, is why.
    throw upload.failure ?? err;
  } finally {
    upload.discard();
  }
}
