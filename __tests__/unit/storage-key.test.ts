import fc from 'fast-check';
import { toStorageKey } from '../../lib/storage-key.js';

const bytes = (s: string): number => Buffer.byteLength(s, 'utf8');
const isHashed = (s: string): boolean => /^#[A-Za-z0-9_-]{43}$/.test(s);

// Any UTF-16 code unit, lone surrogates included.
const codeUnit = fc.integer({ min: 0, max: 0xffff }).map(c => String.fromCharCode(c));
const anyKey = fc.oneof(
  fc.string({ maxLength: 80 }),
  fc.string({ unit: 'binary', maxLength: 120 }),
  fc.string({ unit: codeUnit, maxLength: 120 }),
  fc.string({ unit: fc.constantFrom('a', '€', '😀', '#', '{', '}', '\uD800'), maxLength: 110 }),
  fc.string({ unit: 'grapheme-ascii', minLength: 190, maxLength: 210 }),
);

describe('toStorageKey', () => {
  it.each(['user:42', '203.0.113.7', '2001:db8::/56', 'a', 'tenant|create', 'x#y', 'ü-ß-€-😀'])(
    'keeps the short key %p unchanged',
    key => {
      expect(toStorageKey(key)).toBe(key);
    },
  );

  it('keeps a key of exactly 200 ASCII bytes and hashes one of 201', () => {
    expect(toStorageKey('k'.repeat(200))).toBe('k'.repeat(200));
    const hashed = toStorageKey('k'.repeat(201));
    expect(isHashed(hashed)).toBe(true);
  });

  it('keeps 66 three-byte characters (198 bytes) and hashes 67 (201 bytes)', () => {
    const short = '€'.repeat(66);
    const long = '€'.repeat(67);
    expect(bytes(short)).toBe(198);
    expect(bytes(long)).toBe(201);
    expect(toStorageKey(short)).toBe(short);
    expect(isHashed(toStorageKey(long))).toBe(true);
  });

  it('counts UTF-8 bytes, not UTF-16 units, past 66 units', () => {
    const twoByte200 = 'é'.repeat(100);
    const twoByte202 = 'é'.repeat(101);
    expect(toStorageKey(twoByte200)).toBe(twoByte200);
    expect(isHashed(toStorageKey(twoByte202))).toBe(true);
    const mixed200 = 'a'.repeat(197) + '€';
    const mixed201 = 'a'.repeat(198) + '€';
    expect(bytes(mixed200)).toBe(200);
    expect(bytes(mixed201)).toBe(201);
    expect(toStorageKey(mixed200)).toBe(mixed200);
    expect(isHashed(toStorageKey(mixed201))).toBe(true);
  });

  it('keeps 50 four-byte characters (200 bytes) and hashes 51 (204 bytes)', () => {
    const fifty = '😀'.repeat(50);
    const fiftyOne = '😀'.repeat(51);
    expect(toStorageKey(fifty)).toBe(fifty);
    expect(isHashed(toStorageKey(fiftyOne))).toBe(true);
  });

  it('hashes a long key to a short, stable, bounded value', () => {
    const key = 'x'.repeat(10_000);
    const hashed = toStorageKey(key);
    expect(hashed.startsWith('#')).toBe(true);
    expect(hashed.length).toBe(44);
    expect(toStorageKey(key)).toBe(hashed);
  });

  it.each(['{tag}', 'a{b', 'a}b', '}'])('hashes the key %p, which holds a brace', key => {
    const hashed = toStorageKey(key);
    expect(isHashed(hashed)).toBe(true);
    expect(hashed).not.toMatch(/[{}]/);
  });

  it("hashes keys that start with '#', so no literal key equals another key's hash", () => {
    const long = 'z'.repeat(300);
    const hashOfLong = toStorageKey(long);
    expect(isHashed(hashOfLong)).toBe(true);
    // A client sending the hash as its literal key lands somewhere else.
    expect(toStorageKey(hashOfLong)).not.toBe(hashOfLong);
    expect(isHashed(toStorageKey(hashOfLong))).toBe(true);
    expect(isHashed(toStorageKey('#'))).toBe(true);
    expect(toStorageKey('a#')).toBe('a#');
  });

  it('maps different lone surrogates to different storage keys', () => {
    const high = toStorageKey('\uD800');
    const otherHigh = toStorageKey('\uD801');
    const low = toStorageKey('\uDC00');
    expect(high).not.toBe(otherHigh);
    expect(high).not.toBe(low);
    // Not collapsed onto U+FFFD either.
    expect(high).not.toBe(toStorageKey('\uFFFD'));
    expect(isHashed(high)).toBe(true);
  });

  it('keeps a well-formed surrogate pair but hashes the same units reversed', () => {
    expect(toStorageKey('\uD83D\uDE00')).toBe('😀');
    expect(isHashed(toStorageKey('\uDE00\uD83D'))).toBe(true);
  });

  it('maps distinct keys to distinct storage keys', () => {
    fc.assert(
      fc.property(anyKey, anyKey, (a, b) => {
        fc.pre(a !== b);
        expect(toStorageKey(a)).not.toBe(toStorageKey(b));
      }),
      { numRuns: 2000 },
    );
  });

  it('maps a key and its prefixes or extensions to distinct storage keys', () => {
    fc.assert(
      fc.property(anyKey, fc.string({ minLength: 1, maxLength: 5 }), (key, suffix) => {
        expect(toStorageKey(key)).not.toBe(toStorageKey(key + suffix));
      }),
    );
  });

  it('returns at most 200 UTF-8 bytes, well-formed and without braces', () => {
    fc.assert(
      fc.property(anyKey, key => {
        const stored = toStorageKey(key);
        expect(bytes(stored)).toBeLessThanOrEqual(200);
        expect(stored.isWellFormed()).toBe(true);
        expect(stored).not.toMatch(/[{}]/);
        // Kept exactly when it was already a safe key.
        if (stored !== key) expect(isHashed(stored)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});
