// The SIC container, version 1 (formats/sic-v1.md; mirrors sicc/container.py).
//
//     header (32 bytes) | chunk* ;  chunk = type(4) | length u32 | payload | crc32(type+payload)
//
// Optional ICCP and EXIF, then HYPR (the coded hyper latent z), then LEVL 1, 2, ... Any prefix
// that ends at a chunk boundary after HYPR is a valid file; a prefix that ends inside a level
// (a download in progress) decodes the levels before it. This module never decodes a payload.

import { crc32 } from './crc32.js';
import { CorruptError, ImageTooLargeError, NotSicError, TruncatedError, UnsupportedError, tooLargeMessage } from './errors.js';
import { paddedSize as paddedHeightWidth } from './geometry.js';

export const MAGIC = Uint8Array.of(0x8b, 0x53, 0x49, 0x43, 0x0d, 0x0a, 0x1a, 0x0a);
export const VERSION = 1;
export const HEADER_SIZE = 32;
export const CHUNK_OVERHEAD = 12;
export const MAX_DIMENSION = 1 << 20;
export const FLAG_GRAYSCALE = 0x01;
export const KNOWN_FLAGS = FLAG_GRAYSCALE;
export const MAX_METADATA_BYTES = 1 << 24;
export const MAX_CODED_BYTES_PER_PIXEL = 4;
const CODED_CHUNK_SLACK = 32;
/** The default pixel budget (padded pixels), as sicc.MAX_IMAGE_PIXELS. */
export const MAX_IMAGE_PIXELS = 1 << 26;

const ICCP = 'ICCP', EXIF = 'EXIF', HYPR = 'HYPR', LEVL = 'LEVL';

/** [width, height] padded to multiples of 64. */
export function paddedSize(width, height) {
  const [ph, pw] = paddedHeightWidth(height, width);
  return [pw, ph];
}

export function paddedPixels(width, height) {
  const [pw, ph] = paddedSize(width, height);
  return pw * ph;
}

/** The largest valid SIC file of this size (formats/sic-v1.md, "Size bound"). */
export function maxFileBytes(width, height, modelLevels) {
  return HEADER_SIZE + 2 * (CHUNK_OVERHEAD + MAX_METADATA_BYTES) + (modelLevels + 1) * CODED_CHUNK_SLACK
    + MAX_CODED_BYTES_PER_PIXEL * paddedPixels(width, height);
}

const u32 = (data, pos) => (data[pos] | (data[pos + 1] << 8) | (data[pos + 2] << 16) | (data[pos + 3] << 24)) >>> 0;
const ascii = (bytes) => String.fromCharCode(...bytes);
const hex = (bytes) => Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');

/** Python's repr() of a bytes value (the messages name chunk types as Python does). */
function bytesRepr(kind) {
  const quote = kind.includes(0x27) && !kind.includes(0x22) ? '"' : "'";
  const special = { 0x09: '\\t', 0x0a: '\\n', 0x0d: '\\r', 0x5c: '\\\\' };
  return 'b' + quote + Array.from(kind, (b) => {
    if (special[b]) return special[b];
    if (b === quote.charCodeAt(0)) return '\\' + quote;
    return b >= 0x20 && b < 0x7f ? String.fromCharCode(b) : '\\x' + b.toString(16).padStart(2, '0');
  }).join('') + quote;
}

/** A chunk type for messages: as is when printable ASCII, else escaped (never a control byte). */
function chunkName(kind) {
  if (kind.length && kind.every((b) => b > 0x20 && b < 0x7f)) return ascii(kind);
  return bytesRepr(kind);
}

/**
 * Check magic, version, CRC and sizes before anything is allocated (formats/sic-v1.md, in the
 * spec's order). Returns {width, height, modelId (hex), modelLevels, flags}.
 */
export function parseHeader(data, maxPixels = MAX_IMAGE_PIXELS) {
  if (!data.length) throw new TruncatedError('file is empty');
  const n = Math.min(data.length, MAGIC.length);
  for (let i = 0; i < n; i++) if (data[i] !== MAGIC[i]) throw new NotSicError('not a SIC file (bad signature)');
  if (data.length < HEADER_SIZE) {
    throw new TruncatedError(`file is truncated: ${data.length} bytes, the header alone needs ${HEADER_SIZE}`);
  }
  const version = data[8], flags = data[9], levels = data[10], reserved = data[11];
  const width = u32(data, 12), height = u32(data, 16);
  if (version !== VERSION) throw new UnsupportedError(`SIC version ${version} is not supported (this sicc reads version ${VERSION})`);
  if (crc32(data.subarray(0, HEADER_SIZE - 4)) !== u32(data, 28)) throw new CorruptError('header is corrupt (checksum mismatch)');
  if ((flags & ~KNOWN_FLAGS) || reserved) {
    throw new UnsupportedError(`unknown header flags 0x${flags.toString(16).padStart(2, '0')}/0x${reserved.toString(16).padStart(2, '0')}`);
  }
  if (!(width >= 1 && width <= MAX_DIMENSION && height >= 1 && height <= MAX_DIMENSION)) {
    throw new CorruptError(`image size ${width}x${height} is outside 1..${MAX_DIMENSION}`);
  }
  if (!(levels >= 1 && levels <= 255)) throw new CorruptError(`model level count ${levels} is invalid`);
  if (maxPixels != null && paddedPixels(width, height) > maxPixels) {
    throw new ImageTooLargeError(tooLargeMessage(width, height, paddedSize(width, height), maxPixels));
  }
  return { width, height, modelId: hex(data.subarray(20, 28)), modelLevels: levels, flags };
}

function checkFileSize(header, size) {
  const cap = maxFileBytes(header.width, header.height, header.modelLevels);
  if (size > cap) throw new CorruptError(`file is larger than a ${header.width}x${header.height} SIC file can be (at most ${cap} bytes)`);
}

/** Why `length` bytes cannot be range-coded data of a non-empty latent, or null. */
export function codedPayloadProblem(length) {
  if (length === 0) return 'no coded data, where at least one 32-bit word is needed';
  if (length % 4) return `coded data of ${length} bytes is not a whole number of 32-bit words`;
  return null;
}

/** {kind, payload, end, problem} of the chunk at `pos` (problem: null, 'truncated' or a reason). */
function readChunk(data, pos) {
  if (data.length - pos < 8) return { kind: new Uint8Array(0), payload: null, end: data.length, problem: 'truncated' };
  const kind = data.subarray(pos, pos + 4);
  const end = pos + 8 + u32(data, pos + 4) + 4;
  if (end > data.length) return { kind, payload: null, end: data.length, problem: 'truncated' };
  const payload = data.subarray(pos + 8, end - 4);
  if (crc32(kind, payload) !== u32(data, end - 4)) return { kind, payload, end, problem: 'checksum mismatch' };
  return { kind, payload, end, problem: null };
}

/**
 * Parse a whole or cut file (a Uint8Array). A cut inside a LEVL chunk, or a level that fails its
 * CRC or framing, ends the level list (`truncated` / `corruptLevel` say which) unless `strict`,
 * which throws instead. Anything wrong before the first level always throws.
 * Returns {header, hyper, levels: [Uint8Array], iccProfile, exif, chunkEnds, truncated,
 * corruptLevel, corruptReason}.
 */
export function parse(data, { maxPixels = MAX_IMAGE_PIXELS, strict = false } = {}) {
  const header = parseHeader(data, maxPixels);
  checkFileSize(header, data.length);
  let pos = HEADER_SIZE;
  let icc = null, exif = null, result = null;
  while (pos < data.length) {
    const { kind, payload, end, problem } = readChunk(data, pos);
    const name = ascii(kind);
    if (result === null) { // before and at HYPR every chunk must be whole and intact
      if (problem) {
        if (problem === 'truncated') {
          const where = kind.length ? `the ${chunkName(kind)} chunk` : 'a chunk header';
          throw new TruncatedError(`file is truncated inside ${where}, before any level`);
        }
        throw new CorruptError(`${chunkName(kind)} chunk is corrupt (${problem})`);
      }
      if (name === ICCP || name === EXIF) {
        if (exif !== null || (name === ICCP && icc !== null)) throw new CorruptError(`${name} chunk out of order`);
        if (payload.length > MAX_METADATA_BYTES) {
          throw new CorruptError(`${name} chunk is corrupt (${payload.length} bytes, over the format's ${MAX_METADATA_BYTES})`);
        }
        if (name === ICCP) icc = payload; else exif = payload;
      } else if (name === HYPR) {
        const bad = codedPayloadProblem(payload.length);
        if (bad) throw new CorruptError(`HYPR chunk is corrupt (${bad})`);
        result = {
          header, hyper: payload, levels: [], iccProfile: icc, exif, chunkEnds: [end],
          truncated: false, corruptLevel: null, corruptReason: '',
        };
      } else {
        throw new CorruptError(`unexpected chunk ${bytesRepr(kind)} before the hyperprior`);
      }
      pos = end;
      continue;
    }
    const level = result.levels.length + 1;
    if (problem === 'truncated') {
      if (strict) throw new TruncatedError(`file is truncated inside level ${level}`);
      result.truncated = true;
      break;
    }
    let bad = problem;
    if (bad === null && name !== LEVL) bad = `a ${chunkName(kind)} chunk where the LEVL chunk of level ${level} belongs`;
    else if (bad === null && !payload.length) bad = 'an empty LEVL chunk';
    else if (bad === null && payload[0] !== level) bad = `its level byte says level ${payload[0]}`;
    if (bad === null && level > header.modelLevels) bad = `more levels than the model's ${header.modelLevels}`;
    if (bad === null) bad = codedPayloadProblem(payload.length - 1);
    if (bad) {
      if (strict) throw new CorruptError(`level ${level} is corrupt (${bad})`);
      result.corruptLevel = level;
      result.corruptReason = bad;
      break;
    }
    result.levels.push(payload.subarray(1));
    result.chunkEnds.push(end);
    pos = end;
  }
  if (result === null) throw new TruncatedError('file is truncated: it ends before the hyperprior chunk');
  return result;
}

/** Structure of a file, as `sicc info` reports it: size and, per level, bytes, cumulative bytes and bpp. */
export function fileInfo(data) {
  const parsed = parse(data, { maxPixels: null });
  const { header, chunkEnds: ends } = parsed;
  const pixels = header.width * header.height;
  const levels = [];
  for (let i = 1; i < ends.length; i++) {
    levels.push({ index: i, bytes: ends[i] - ends[i - 1], cumulativeBytes: ends[i], cumulativeBpp: (ends[i] * 8) / pixels });
  }
  return {
    width: header.width, height: header.height, modelId: header.modelId, modelLevels: header.modelLevels,
    fileBytes: data.length, baseBytes: ends[0], levels, truncated: parsed.truncated, corruptLevel: parsed.corruptLevel,
    grayscale: Boolean(header.flags & FLAG_GRAYSCALE), hasIccProfile: parsed.iccProfile !== null, hasExif: parsed.exif !== null,
  };
}
