import { z } from 'zod';
import { defineKind, result } from '../stage-kit.js';

/** `respond`: the journey's answer, built by a mapping (default: the last stage's output). */
export const respondKind = defineKind({
  kind: 'respond',
  terminal: true,
  schema: z.strictObject({
    body: z.unknown().optional(),
    /** A one-line reason for the route, such as "popular answer". */
    reason: z.string().max(120).optional(),
  }),
  build(config, b) {
    const body =
      config.body === undefined ? undefined : b.paths.mapping(config.body, `${b.where}.body`);
    const reason = config.reason ?? 'answered';
    return {
      id: b.id,
      kind: 'respond',
      run: (ctx, state) =>
        result.respond(
          'respond',
          reason,
          (body === undefined ? state.last : body(state, ctx)) ?? null,
        ),
    };
  },
});
