import { createHash } from 'node:crypto';

const MAX_KEY_BYTES = 200;
const HASH_MARK = '#';

/**
 * Maps a caller's key to the key stored in Redis or memory, injectively.
 *
 * Kept as is: well-formed keys of at most 200 UTF-8 bytes without `{`/`}`
 * (which would cut a Redis Cluster hash tag short) that do not start with
 * `#`. Everything else becomes `#` + SHA-256 of the key's UTF-16 code units.
 * Hashing the code units, not UTF-8, keeps lone surrogates distinct (UTF-8
 * would turn them all into U+FFFD), and since no kept key starts with `#`, a
 * client cannot pick a literal key that lands on someone else's hash.
 */
export function toStorageKey(key: string): string {
  // 66 UTF-16 units encode to at most 198 UTF-8 bytes: skip the byte count.
  if (key.length <= 66 ? fitsShort(key) : fitsLong(key)) return key;
  return HASH_MARK + createHash('sha256').update(key, 'utf16le').digest('base64url');
}

function fitsShort(key: string): boolean {
  return !key.startsWith(HASH_MARK) && !hasBrace(key) && key.isWellFormed();
}

function fitsLong(key: string): boolean {
  return (
    key.length <= MAX_KEY_BYTES && Buffer.byteLength(key, 'utf8') <= MAX_KEY_BYTES && fitsShort(key)
  );
}

function hasBrace(key: string): boolean {
  return key.includes('{') || key.includes('}');
}
