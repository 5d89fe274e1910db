/**
 * CRC-32 (zip, polynomial 0xEDB88320) and CRC-32C (Castagnoli, 0x82F63B78, used by LevelDB tables and TensorFlow
 * checkpoints) with slicing-by-8 tables, plus the LevelDB/TensorFlow "masked" form of a CRC-32C.
 * @module
 */

function tables(poly: number): Uint32Array[] {
  const t = Array.from({ length: 8 }, () => new Uint32Array(256));
  for (let i = 0; i < 256; i++) {
    let c = i;
    for (let k = 0; k < 8; k++) c = c & 1 ? (c >>> 1) ^ poly : c >>> 1;
    t[0][i] = c >>> 0;
  }
  for (let i = 0; i < 256; i++) {
    for (let s = 1; s < 8; s++) t[s][i] = ((t[s - 1][i] >>> 8) ^ t[0][t[s - 1][i] & 0xff]) >>> 0;
  }
  return t;
}

function makeCrc(poly: number): (bytes: Uint8Array, crc?: number) => number {
  const [t0, t1, t2, t3, t4, t5, t6, t7] = tables(poly);
  return (bytes: Uint8Array, crc = 0): number => {
    let c = ~crc >>> 0;
    let i = 0;
    const n = bytes.length;
    const end8 = n - (n % 8);
    for (; i < end8; i += 8) {
      const a = (c ^ (bytes[i] | (bytes[i + 1] << 8) | (bytes[i + 2] << 16) | (bytes[i + 3] << 24))) >>> 0;
      c = t7[a & 0xff] ^ t6[(a >>> 8) & 0xff] ^ t5[(a >>> 16) & 0xff] ^ t4[a >>> 24] ^
        t3[bytes[i + 4]] ^ t2[bytes[i + 5]] ^ t1[bytes[i + 6]] ^ t0[bytes[i + 7]];
    }
    for (; i < n; i++) c = t0[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
    return ~c >>> 0;
  };
}

/** CRC-32 as zip files store it; pass the previous value as `crc` to continue over several chunks. */
export const crc32: (bytes: Uint8Array, crc?: number) => number = makeCrc(0xedb88320);

/** CRC-32C (Castagnoli); pass the previous value as `crc` to continue over several chunks. */
export const crc32c: (bytes: Uint8Array, crc?: number) => number = makeCrc(0x82f63b78);

const MASK_DELTA = 0xa282ead8;

/** LevelDB's masked CRC-32C (rotate right by 15, add a constant), as TensorFlow stores it. */
export function maskCrc(crc: number): number {
  return ((((crc >>> 15) | (crc << 17)) >>> 0) + MASK_DELTA) >>> 0;
}

/** Inverse of {@linkcode maskCrc}. */
export function unmaskCrc(masked: number): number {
  const rot = (masked - MASK_DELTA) >>> 0;
  return ((rot >>> 17) | (rot << 15)) >>> 0;
}
