import { describe, expect, it } from 'vitest';
import { resolveClass } from './classes.js';
import { TEST_CLASSES } from '../../test/support/admission-settings.js';

const tenant = (t: object) => ({ keys: [], ...t });

describe('resolveClass', () => {
  it('takes the class a tenant asks for when its config allows it', () => {
    const t = tenant({ max_class: 'personalization' });
    expect(resolveClass(TEST_CLASSES, t, 'background', undefined, 'interactive')).toBe(
      'background',
    );
    expect(resolveClass(TEST_CLASSES, t, 'personalization', undefined, 'interactive')).toBe(
      'personalization',
    );
  });

  it('refuses with 403 a tenant that asks for a class above its max_class (no self-promotion)', () => {
    const t = tenant({ max_class: 'background' });
    expect(() => resolveClass(TEST_CLASSES, t, 'interactive', undefined, 'interactive')).toThrow(
      expect.objectContaining({ code: 'SY_ERR_CLASS_FORBIDDEN', status: 403 }),
    );
  });

  it('refuses a class outside the tenant’s allowed list', () => {
    const t = tenant({ classes: ['batch'] });
    expect(() => resolveClass(TEST_CLASSES, t, 'background', undefined, 'interactive')).toThrow(
      expect.objectContaining({ code: 'SY_ERR_CLASS_FORBIDDEN' }),
    );
  });

  it('answers 400 for a class that does not exist', () => {
    expect(() => resolveClass(TEST_CLASSES, undefined, 'vip', undefined, 'interactive')).toThrow(
      expect.objectContaining({ code: 'SY_ERR_INVALID_REQUEST', param: 'x-switchyard-class' }),
    );
  });

  it('lowers a configured class to the best one the tenant may use', () => {
    const t = tenant({ max_class: 'background' });
    expect(resolveClass(TEST_CLASSES, t, undefined, 'interactive', 'interactive')).toBe(
      'background',
    );
    expect(resolveClass(TEST_CLASSES, t, undefined, undefined, 'interactive')).toBe('background');
    expect(
      resolveClass(
        TEST_CLASSES,
        tenant({ default_class: 'batch' }),
        undefined,
        undefined,
        'interactive',
      ),
    ).toBe('batch');
  });
});
