// Range decoding compatible with constriction's `stream.queue.RangeEncoder` (64-bit state,
// 32-bit words, 24-bit probability precision), for the two models sicc uses (mirrors
// sicc/coding/range_coding.py):
//
// - gaussian: constriction `QuantizedGaussian(-255, 255)`, a leaky quantization of N(mean, scale)
//   to unit bins, one (mean, scale) per symbol, for the levels of y;
// - categorical: constriction `Categorical(freq / sum(freq), perfect=False)`, one integer
//   frequency table per channel, for the hyper latent z.
//
// As in Python, decoding checks that the data is exactly what the encoder writes for the decoded
// symbols (re-encoding them), so a payload too short (the decoder would read past its end) or
// too long is refused, never decoded into a latent made up from padding.

import { erf } from './erf.js';

export const Y_BOUND = 255;
const PRECISION = 24;
const ONE = 1 << PRECISION; // 2**24

export class CodingError extends Error {
  constructor(message) {
    super(message);
    this.name = 'CodingError';
  }
}

// -- the quantized Gaussian --------------------------------------------------------------------
const GAUSSIAN_FREE_WEIGHT = ONE - 1 - 2 * Y_BOUND; // mass left after each symbol's minimum 1

/**
 * The left cumulative frequency of symbol `t` (t in -Y_BOUND .. Y_BOUND + 1; the last is the
 * total 2**24) under N(mean, scale): floor(free_weight * cdf(t - 0.5)) plus one per symbol
 * below t, as constriction's LeakyQuantizer computes it (cdf = (1 + erf((x-mu)/(sigma*sqrt2)))/2).
 */
export function gaussianLeft(t, mean, scale) {
  if (t <= -Y_BOUND) return 0;
  if (t > Y_BOUND) return ONE;
  const cdf = (1 + erf((t - 0.5 - mean) / (scale * Math.SQRT2))) / 2;
  return Math.floor(GAUSSIAN_FREE_WEIGHT * cdf) + (t + Y_BOUND);
}

/**
 * The symbol whose interval [left(s), left(s+1)) holds `quantile`, found by galloping from
 * round(mean) and bisecting. Writes the symbol's left cumulative and probability to `out`.
 */
function gaussianSymbol(quantile, mean, scale, out) {
  let start = Math.round(mean);
  start = start < -Y_BOUND ? -Y_BOUND : start > Y_BOUND ? Y_BOUND : start;
  let lo, hi, leftLo, leftHi;
  const leftStart = gaussianLeft(start, mean, scale);
  if (leftStart <= quantile) { // search upwards for the first t with left(t) > quantile
    lo = start; leftLo = leftStart;
    for (let step = 1; ; step *= 2) {
      const t = Math.min(lo + step, Y_BOUND + 1);
      const left = gaussianLeft(t, mean, scale);
      if (left > quantile) { hi = t; leftHi = left; break; }
      lo = t; leftLo = left;
    }
  } else { // search downwards for the last t with left(t) <= quantile
    hi = start; leftHi = leftStart;
    for (let step = 1; ; step *= 2) {
      const t = Math.max(hi - step, -Y_BOUND);
      const left = gaussianLeft(t, mean, scale);
      if (left <= quantile) { lo = t; leftLo = left; break; }
      hi = t; leftHi = left;
    }
  }
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    const left = gaussianLeft(mid, mean, scale);
    if (left <= quantile) { lo = mid; leftLo = left; } else { hi = mid; leftHi = left; }
  }
  out[0] = leftLo;
  out[1] = leftHi - leftLo;
  return lo;
}

// -- the categorical model ----------------------------------------------------------------------
/**
 * Left cumulative frequencies (length K + 1, the last 2**24) of constriction's fast quantization
 * of the probabilities freq / sum(freq): floor(cumulative * free_weight / normalization) + index.
 * The arithmetic is float64, in the order constriction uses (exact for sicc's tables, whose
 * rows sum to 2**16).
 */
export function categoricalCdf(frequencies) {
  const k = frequencies.length;
  let total = 0;
  for (let i = 0; i < k; i++) total += Number(frequencies[i]);
  const probabilities = Array.from(frequencies, (f) => Number(f) / total);
  let normalization = 0;
  for (const p of probabilities) normalization += p;
  const scale = (ONE - k) / normalization;
  const cdf = new Float64Array(k + 1);
  let cumulative = 0;
  for (let i = 0; i < k; i++) {
    cdf[i] = Math.floor(cumulative * scale) + i;
    cumulative += probabilities[i];
  }
  cdf[k] = ONE;
  for (let i = 0; i < k; i++) {
    if (!(cdf[i + 1] > cdf[i])) throw new CodingError('categorical model has a symbol of zero probability');
  }
  return cdf;
}

function categoricalSymbol(quantile, cdf, out) {
  let lo = 0, hi = cdf.length - 1; // cdf[lo] <= quantile < cdf[hi]
  while (hi - lo > 1) {
    const mid = (lo + hi) >> 1;
    if (cdf[mid] <= quantile) lo = mid; else hi = mid;
  }
  out[0] = cdf[lo];
  out[1] = cdf[lo + 1] - cdf[lo];
  return lo;
}

// -- the coder -----------------------------------------------------------------------------------
function toWords(data) {
  if (data.length % 4) throw new CodingError(`coded data of ${data.length} bytes is not a whole number of 32-bit words`);
  const words = new Uint32Array(data.length / 4);
  for (let i = 0, j = 0; i < words.length; i++, j += 4) {
    words[i] = (data[j] | (data[j + 1] << 8) | (data[j + 2] << 16) | (data[j + 3] << 24)) >>> 0;
  }
  return words;
}

const TWO32 = 2 ** 32;
const TWO24 = 2 ** 24;

/**
 * The exact 64-bit product q * scale (q < 2**26, scale < 2**40) as its upper and lower 32-bit
 * halves, in `out`: scale is split at bit 20 so that each partial product stays below 2**53.
 */
function product64(q, scale, out) {
  const s1 = Math.floor(scale / 1048576), s0 = scale - s1 * 1048576; // scale = s1 * 2**20 + s0
  const a = q * s1, b = q * s0; // q * scale = a * 2**20 + b, both below 2**46
  const ah = Math.floor(a / 4096), bh = Math.floor(b / TWO32);
  let lo = (a - ah * 4096) * 1048576 + (b - bh * TWO32), hi = ah + bh;
  if (lo >= TWO32) { lo -= TWO32; hi += 1; }
  out[0] = hi;
  out[1] = lo;
}

/**
 * constriction's queue RangeDecoder: reads words front to back, zeros past the end.
 *
 * constriction keeps 64-bit `lower`, `range` and `point`; the symbols depend only on
 * d = (point - lower) mod 2**64 and on scale = range >> 24, which is what this keeps, in doubles
 * and without BigInt: d as two 32-bit halves, scale (below 2**40) as one exact number. Every step
 * is constriction's, in exact integer arithmetic: consuming [left, left + p) subtracts
 * left * scale from d (never below zero: left <= quantile), the new range is scale * p, and when
 * it falls below 2**32 both are shifted up one word (then d < range < 2**32, so no bit is lost).
 */
export class RangeDecoder {
  constructor(words) {
    this.words = words;
    this.pos = 0;
    this.scale = TWO32 * 256 - 1; // (2**64 - 1) >> 24
    this.high = this.next(); // d, upper and lower 32 bits (lower = 0, point = the first two words)
    this.low = this.next();
    this.rem = 0; // d - quantile * scale, set by quantile()
    this.quot = 0;
    this.pair = [0, 0];
  }

  next() {
    return this.pos < this.words.length ? this.words[this.pos++] : 0;
  }

  /** The quantile of the next symbol, in [0, 2**24): floor(d / scale), exactly. */
  quantile() {
    const scale = this.scale, high = this.high, low = this.low;
    const approx = (high * TWO32 + low) / scale; // within a few units of the last place of d / scale
    if (!(approx < TWO24 + 1)) throw new CodingError('range decoder failed: invalid compressed data');
    let q = Math.floor(approx);
    product64(q, scale, this.pair);
    let rem = (high - this.pair[0]) * TWO32 + (low - this.pair[1]); // d - q * scale: small, exact
    while (rem < 0) { q -= 1; rem += scale; }
    while (rem >= scale) { q += 1; rem -= scale; }
    if (q >= TWO24) throw new CodingError('range decoder failed: invalid compressed data');
    this.quot = q;
    this.rem = rem;
    return q;
  }

  /** Consume the symbol of interval [left, left + probability) (left <= quantile < left + probability). */
  advance(left, probability) {
    const scale = this.scale;
    const range = scale * probability; // rounded when at least 2**32, exact below
    const k = this.quot - left; // d - left * scale = k * scale + rem < range
    if (range < TWO32) {
      const d = k * scale + this.rem; // below 2**32: exact
      this.high = d;
      this.low = this.next();
      this.scale = range * 256; // (range << 32) >> 24
    } else {
      product64(k, scale, this.pair);
      let lo = this.pair[1] + this.rem, hi = this.pair[0]; // rem < scale < 2**40
      const carry = Math.floor(lo / TWO32);
      lo -= carry * TWO32;
      hi += carry;
      this.high = hi;
      this.low = lo;
      const sh = Math.floor(scale / TWO24), sl = scale - sh * TWO24; // (scale * p) >> 24, exactly
      this.scale = sh * probability + Math.floor((sl * probability) / TWO24);
    }
  }
}

/**
 * constriction's queue RangeEncoder, driven by (left, probability) pairs. Its 64-bit `lower` and
 * `range` are kept as upper and lower 32-bit halves in doubles (exact integer arithmetic, no
 * BigInt); `lower` wraps modulo 2**64 as constriction's does.
 */
export class RangeEncoder {
  constructor() {
    this.words = [];
    this.lowerHigh = 0; this.lowerLow = 0;
    this.rangeHigh = TWO32 - 1; this.rangeLow = TWO32 - 1; // 2**64 - 1
    this.inverted = 0; // count of words held back while a carry is undecided
    this.firstInverted = 0;
    this.pair = [0, 0];
  }

  /** Whether lower + range stays below 2**64 (constriction: (lower + range) mod 2**64 > lower). */
  fits(lowerHigh, lowerLow) {
    return lowerHigh + this.rangeHigh + (lowerLow + this.rangeLow >= TWO32 ? 1 : 0) < TWO32;
  }

  encode(left, probability) {
    const pair = this.pair;
    const scale = this.rangeHigh * 256 + Math.floor(this.rangeLow / TWO24); // range >> 24
    product64(probability, scale, pair);
    this.rangeHigh = pair[0]; this.rangeLow = pair[1];
    product64(left, scale, pair);
    let low = this.lowerLow + pair[1], high = this.lowerHigh + pair[0];
    if (low >= TWO32) { low -= TWO32; high += 1; }
    const carried = high >= TWO32; // the new lower wrapped around: it is below the old one
    if (carried) high -= TWO32;
    if (this.inverted && this.fits(high, low)) {
      this.words.push(carried ? (this.firstInverted + 1) % TWO32 : this.firstInverted);
      for (let i = 1; i < this.inverted; i++) this.words.push(carried ? 0 : 0xffffffff);
      this.inverted = 0;
    }
    this.lowerHigh = high; this.lowerLow = low;
    if (this.rangeHigh === 0) { // range below 2**32: shift a word out
      this.rangeHigh = this.rangeLow; this.rangeLow = 0;
      const lowerWord = this.lowerHigh;
      this.lowerHigh = this.lowerLow; this.lowerLow = 0;
      if (this.inverted) this.inverted += 1;
      else if (this.fits(this.lowerHigh, this.lowerLow)) this.words.push(lowerWord);
      else { this.inverted = 1; this.firstInverted = lowerWord; }
    }
  }

  /** The sealed words (what get_compressed() returns). */
  finish() {
    const out = this.words.slice();
    if (this.rangeHigh === TWO32 - 1 && this.rangeLow === TWO32 - 1) return out;
    // point = (lower + 2**32 - 1) mod 2**64
    let low = this.lowerLow + (TWO32 - 1), high = this.lowerHigh;
    if (low >= TWO32) { low -= TWO32; high += 1; }
    const wrapped = high >= TWO32;
    if (wrapped) high -= TWO32;
    if (this.inverted) {
      out.push(wrapped ? (this.firstInverted + 1) % TWO32 : this.firstInverted);
      for (let i = 1; i < this.inverted; i++) out.push(wrapped ? 0 : 0xffffffff);
    }
    const pointWord = high;
    out.push(pointWord);
    const endHigh = (this.lowerHigh + this.rangeHigh + (this.lowerLow + this.rangeLow >= TWO32 ? 1 : 0)) % TWO32;
    if (endHigh === pointWord) out.push(0);
    return out;
  }
}

/**
 * The range decoder cannot tell where its data ends (past the end it reads zeros, and it never
 * looks at words it does not need), so a payload is valid only if re-encoding the decoded symbols
 * gives it back word for word (sicc/coding/range_coding.py _check_exact).
 */
function checkExact(words, intervals, count) {
  const encoder = new RangeEncoder();
  for (let i = 0; i < count; i++) encoder.encode(intervals[2 * i], intervals[2 * i + 1]);
  const again = encoder.finish();
  const bytes = words.length * 4, rebytes = again.length * 4;
  if (rebytes > bytes) {
    throw new CodingError(`range decoder ran past the end of its data (${bytes} bytes; the symbols it decoded take ${rebytes})`);
  }
  if (rebytes < bytes) throw new CodingError(`range decoder left data unused (${bytes - rebytes} of ${bytes} bytes)`);
  for (let i = 0; i < words.length; i++) {
    if (again[i] !== words[i]) throw new CodingError('range-coded data is not the encoding of the symbols it decodes to');
  }
}

/** Integer symbols coded under N(means[i], scales[i]) quantized to unit bins: Int32Array. */
export function decodeGaussian(data, means, scales) {
  const words = toWords(data);
  const n = means.length;
  const out = new Int32Array(n);
  const intervals = new Float64Array(2 * n);
  const pair = [0, 0];
  const decoder = new RangeDecoder(words);
  for (let i = 0; i < n; i++) {
    out[i] = gaussianSymbol(decoder.quantile(), means[i], scales[i], pair);
    decoder.advance(pair[0], pair[1]);
    intervals[2 * i] = pair[0];
    intervals[2 * i + 1] = pair[1];
  }
  checkExact(words, intervals, n);
  return out;
}

/** `count` symbols per channel, channel c with frequency table frequencies[c]: Int32Array (C*count). */
export function decodeCategorical(data, frequencies, count) {
  const words = toWords(data);
  const rows = frequencies.length;
  const out = new Int32Array(rows * count);
  const intervals = new Float64Array(2 * rows * count);
  const pair = [0, 0];
  const decoder = new RangeDecoder(words);
  let i = 0;
  for (let c = 0; c < rows; c++) {
    const cdf = categoricalCdf(frequencies[c]);
    for (let j = 0; j < count; j++, i++) {
      out[i] = categoricalSymbol(decoder.quantile(), cdf, pair);
      decoder.advance(pair[0], pair[1]);
      intervals[2 * i] = pair[0];
      intervals[2 * i + 1] = pair[1];
    }
  }
  checkExact(words, intervals, rows * count);
  return out;
}
