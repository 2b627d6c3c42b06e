import { z } from 'zod';
import { defineKind, result, traced } from '../stage-kit.js';

/**
 * `transform`: a small declarative mapping from what earlier stages produced to a new object
 * (the next stages' input): `set: { query: input.text, intent: intent.label, k: { const: 5 } }`.
 */
export const transformKind = defineKind({
  kind: 'transform',
  schema: z.strictObject({ set: z.record(z.string(), z.unknown()) }),
  build(config, b) {
    const map = b.paths.mapping(config.set, `${b.where}.set`);
    const keys = Object.keys(config.set).length;
    return {
      id: b.id,
      kind: 'transform',
      run: (ctx, state) => {
        // The new object is derived from whatever tagged data it copied: a later model call
        // that may not see some of it gets the object built again without it.
        const built = traced(state, () => map(state, ctx) ?? null);
        return result.next('ok', `mapped ${keys} field${keys === 1 ? '' : 's'}`, {
          output: built.value,
          ...(built.inputs.length === 0
            ? {}
            : {
                update: {
                  derived: {
                    roots: built.inputs,
                    recompute: (w: ReadonlySet<string>) => built.rebuild(w),
                  },
                },
              }),
        });
      },
    };
  },
});
