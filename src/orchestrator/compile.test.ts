import { describe, expect, it } from 'vitest';
import { systemClock } from '../core/clock.js';
import { compileJourneys } from './compile.js';
import { Router } from './router.js';
import { ScriptedInvoker } from '../../test/support/scripted-invoker.js';

const invoker = new ScriptedInvoker({
  intent: { tier: 'edge', ops: ['classify', 'infer'], answer: () => ({}) },
  big: { tier: 'central', ops: ['chat'], answer: () => ({}) },
  emb: { tier: 'edge', ops: ['embeddings'], answer: () => ({}) },
});

function problems(
  stages: unknown[],
  services = { features: false, retriever: false, policy: false },
): readonly string[] {
  return compileJourneys(
    { support: { class: 'interactive', stages } },
    { models: (n) => invoker.info(n), services, router: new Router(systemClock) },
  ).problems;
}

describe('journey graph validation', () => {
  it('accepts a valid graph', () => {
    expect(
      problems([
        { cache: { semantic: { embed: 'emb', threshold: 0.9 } } },
        { id: 'intent', classify: { model: 'intent' } },
        {
          id: 'route',
          branch: { cases: [{ when: 'confidence >= 0.8', to: 'local' }], else: 'answer' },
        },
        { id: 'local', respond: { body: { intent: 'intent.label' } } },
        { id: 'answer', infer: { model: 'big', prompt: 'input.text' } },
      ]),
    ).toEqual([]);
  });

  it('reports an unknown stage kind with its path', () => {
    expect(problems([{ clasify: { model: 'intent' } }])).toEqual([
      expect.stringMatching(
        /^journeys\.support\.stages\[0\]\.clasify: unknown stage kind "clasify" \(known: cache, /,
      ),
    ]);
  });

  it('reports dangling references in branches, next, on_fail and paths', () => {
    const p = problems([
      { id: 'a', classify: { model: 'intent' }, on_fail: 'nowhere' },
      { id: 'b', branch: { cases: [{ when: 'confidence > 0.5', to: 'answr' }], else: 'c' } },
      { id: 'c', respond: { body: 'intnt.label' } },
    ]);
    expect(p).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^journeys\.support\.stages\[0\]\.on_fail: unknown stage "nowhere"/),
        expect.stringMatching(
          /^journeys\.support\.stages\[1\]\.branch\.cases\[0\]\.to: unknown stage "answr"/,
        ),
        expect.stringMatching(
          /^journeys\.support\.stages\[2\]\.respond\.body: "intnt\.label" starts with "intnt"/,
        ),
      ]),
    );
  });

  it('reports cycles', () => {
    const p = problems([
      { id: 'a', classify: { model: 'intent' } },
      { id: 'b', branch: { cases: [{ when: 'confidence > 0.5', to: 'a' }], else: 'c' } },
      { id: 'c', respond: {} },
    ]);
    expect(p).toEqual([
      expect.stringMatching(
        /^journeys\.support\.stages\[1\]\.branch\.cases\[0\]: cycle: b → a → b|cycle: a → b → a/,
      ),
    ]);
  });

  it('reports unreachable stages', () => {
    const p = problems([
      { id: 'a', respond: {} },
      { id: 'orphan', infer: { model: 'big', prompt: 'input.text' } },
    ]);
    expect(p).toEqual([
      'journeys.support.stages[1]: stage "orphan" is unreachable: no stage continues, branches or falls to it',
    ]);
  });

  it('reports unknown models, models without the operation, and bad stage bodies', () => {
    const p = problems([
      { id: 'a', classify: { model: 'nope' } },
      { id: 'b', infer: { model: 'emb', prompt: 'input.text' } },
      { id: 'c', infer: { model: 'big', prompt: 'input.text', tempo: 1 } },
      { id: 'd', branch: { cases: [{ when: 'confidence >=', to: 'e' }], else: 'e' } },
      { id: 'e', respond: {} },
    ]);
    expect(p).toEqual(
      expect.arrayContaining([
        'journeys.support.stages[0].classify.model: unknown model "nope"',
        expect.stringMatching(
          /^journeys\.support\.stages\[1\]\.infer\.model: model "emb" does not serve chat/,
        ),
        'journeys.support.stages[2].infer: unknown key "tempo"',
        expect.stringMatching(
          /^journeys\.support\.stages\[3\]\.branch\.cases\[0\]\.when: cannot parse condition/,
        ),
      ]),
    );
  });

  it('reports duplicate ids and stages that need a service the gateway lacks', () => {
    const p = problems([
      { id: 'a', classify: { model: 'intent' } },
      { id: 'a', features: { id: 'attr.user', names: ['user.rides_7d'] } },
    ]);
    expect(p).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^journeys\.support\.stages\[1\]\.id: duplicate stage id "a"/),
      ]),
    );
    const q = problems([{ features: { id: 'attr.user', names: ['x'] } }]);
    expect(q).toEqual([
      'journeys.support.stages[0].features: this stage needs a feature store (features:), which is not configured',
    ]);
  });

  it('validates inline sub-stages with their own paths', () => {
    const p = problems([
      {
        id: 'f',
        fallback: { try: [{ infer: { model: 'big', prompt: 'input.text' } }, { bogus: {} }] },
      },
    ]);
    expect(p).toEqual([
      expect.stringMatching(
        /^journeys\.support\.stages\[0\]\.fallback\.try\[1\]\.bogus: unknown stage kind/,
      ),
    ]);
  });
});
