// The range coder's 64-bit arithmetic in doubles (range_coding.js keeps no BigInt) against a
// plain BigInt transcription of constriction's queue range coder, step by step, on random
// words and random intervals: tiny probabilities (a word shifted in or out at every symbol),
// huge ones (none for a long time), carries, and data that decodes past the end.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { CodingError, RangeDecoder, RangeEncoder } from '../src/range_coding.js';

const MASK64 = (1n << 64n) - 1n;

class BigDecoder {
  constructor(words) {
    this.words = words; this.pos = 0; this.lower = 0n; this.range = MASK64;
    this.point = (BigInt(this.next()) << 32n) | BigInt(this.next());
  }
  next() { return this.pos < this.words.length ? this.words[this.pos++] : 0; }
  quantile() {
    this.scale = this.range >> 24n;
    const q = ((this.point - this.lower) & MASK64) / this.scale;
    return q >= 1n << 24n ? null : Number(q);
  }
  advance(left, probability) {
    this.lower = (this.lower + this.scale * BigInt(left)) & MASK64;
    this.range = this.scale * BigInt(probability);
    if (this.range < 1n << 32n) {
      this.lower = (this.lower << 32n) & MASK64; this.range <<= 32n;
      this.point = ((this.point << 32n) & MASK64) | BigInt(this.next());
    }
  }
}

class BigEncoder {
  constructor() { this.words = []; this.lower = 0n; this.range = MASK64; this.inverted = 0; this.first = 0n; }
  encode(left, probability) {
    const scale = this.range >> 24n;
    this.range = scale * BigInt(probability);
    const lower = (this.lower + scale * BigInt(left)) & MASK64;
    if (this.inverted && ((lower + this.range) & MASK64) > lower) {
      const carried = lower < this.lower;
      this.words.push(Number(carried ? (this.first + 1n) & 0xffffffffn : this.first));
      for (let i = 1; i < this.inverted; i++) this.words.push(carried ? 0 : 0xffffffff);
      this.inverted = 0;
    }
    this.lower = lower;
    if (this.range < 1n << 32n) {
      this.range <<= 32n;
      const word = this.lower >> 32n;
      this.lower = (this.lower << 32n) & MASK64;
      if (this.inverted) this.inverted += 1;
      else if (((this.lower + this.range) & MASK64) > this.lower) this.words.push(Number(word));
      else { this.inverted = 1; this.first = word; }
    }
  }
  finish() {
    const out = this.words.slice();
    if (this.range === MASK64) return out;
    const point = (this.lower + 0xffffffffn) & MASK64;
    if (this.inverted) {
      out.push(Number(point >= this.lower ? this.first : (this.first + 1n) & 0xffffffffn));
      for (let i = 1; i < this.inverted; i++) out.push(point >= this.lower ? 0xffffffff : 0);
    }
    const word = point >> 32n;
    out.push(Number(word));
    if (((this.lower + this.range) & MASK64) >> 32n === word) out.push(0);
    return out;
  }
}

/** A small deterministic generator (xorshift32), so that a failure can be replayed. */
function generator(seed) {
  let s = seed >>> 0 || 1;
  return () => { s ^= s << 13; s >>>= 0; s ^= s >>> 17; s ^= s << 5; s >>>= 0; return s / 2 ** 32; };
}

/** A random interval of [0, 2**24) holding `quantile` (or anywhere), of one of three sizes. */
function interval(random, quantile = null) {
  const kind = random();
  const size = kind < 0.3 ? 1 + Math.floor(random() * 4) : kind < 0.6 ? 1 + Math.floor(random() * 2 ** 24) : 2 ** 24 - Math.floor(random() * 16);
  const probability = Math.min(size, 2 ** 24);
  const q = quantile ?? Math.floor(random() * 2 ** 24);
  let left = q - Math.floor(random() * probability);
  left = Math.max(0, Math.min(left, 2 ** 24 - probability));
  if (quantile !== null && !(left <= q && q < left + probability)) return [q, 1];
  return [left, probability];
}

test('the decoder gives the quantiles of a BigInt range decoder', () => {
  const random = generator(12345);
  let steps = 0, refused = 0;
  for (let trial = 0; trial < 400; trial++) {
    const words = Uint32Array.from({ length: 1 + Math.floor(random() * 40) }, () => Math.floor(random() * 2 ** 32));
    if (trial % 5 === 0) words[0] = 0; // small d: quantiles near zero
    const ours = new RangeDecoder(words), theirs = new BigDecoder(words);
    for (let i = 0; i < 200; i++, steps++) {
      const want = theirs.quantile();
      if (want === null) {
        assert.throws(() => ours.quantile(), CodingError);
        refused += 1;
        break;
      }
      assert.equal(ours.quantile(), want, `trial ${trial}, symbol ${i}`);
      const [left, probability] = interval(random, want);
      ours.advance(left, probability);
      theirs.advance(left, probability);
    }
  }
  assert.ok(steps > 20000 && refused > 0, `${steps} steps, ${refused} refused`);
});

test('the encoder writes the words of a BigInt range encoder', () => {
  const random = generator(777);
  for (let trial = 0; trial < 600; trial++) {
    const ours = new RangeEncoder(), theirs = new BigEncoder();
    const n = Math.floor(random() * 300);
    for (let i = 0; i < n; i++) {
      const [left, probability] = interval(random);
      ours.encode(left, probability);
      theirs.encode(left, probability);
    }
    assert.deepEqual(ours.finish(), theirs.finish(), `trial ${trial}, ${n} symbols`);
  }
});

const wordsOf = (d, ...more) => Uint32Array.from([Number(d >> 32n), Number(d & 0xffffffffn), ...more]);

test('quantiles at and next to exact multiples of the scale (where a float quotient rounds)', () => {
  const random = generator(99);
  const scale = (1n << 40n) - 1n; // the initial state's
  for (let i = 0; i < 3000; i++) {
    const k = BigInt(Math.floor(random() * 2 ** 24)) + (i < 10 ? (1n << 24n) - 11n : 0n);
    for (const offset of [-2n, -1n, 0n, 1n, 2n, scale - 1n]) {
      const d = k * scale + offset;
      if (d < 0n || d > MASK64) continue;
      const words = wordsOf(d, Math.floor(random() * 2 ** 32));
      const want = new BigDecoder(words).quantile();
      const ours = new RangeDecoder(words);
      if (want === null) assert.throws(() => ours.quantile(), CodingError);
      else assert.equal(ours.quantile(), want, `d = ${k} * scale + ${offset}`);
    }
  }
});

test('the scale after a large probability is exact where the float product rounds', () => {
  const random = generator(4242);
  const scale0 = (1n << 40n) - 1n; // the initial state's
  let found = 0;
  for (let i = 0; i < 400000 && found < 200; i++) {
    const p1 = 2 ** 23 + Math.floor(random() * 2 ** 23), p2 = 2 ** 23 + Math.floor(random() * 2 ** 23);
    const scale1 = (scale0 * BigInt(p1)) >> 24n; // after a first symbol [0, p1)
    if (Math.floor((Number(scale1) * p2) / 2 ** 24) === Number((scale1 * BigInt(p2)) >> 24n)) continue; // no rounding
    found += 1;
    // d just below the range after [0, p2): the quantile after it is sensitive to the scale
    const words = wordsOf(scale1 * BigInt(p2) - 1n - BigInt(Math.floor(random() * 2 ** 36)), 7, 8);
    const ours = new RangeDecoder(words), theirs = new BigDecoder(words);
    for (let step = 0; step < 4; step++) {
      const want = theirs.quantile();
      if (want === null) {
        assert.throws(() => ours.quantile(), CodingError);
        break;
      }
      assert.equal(ours.quantile(), want, `p1 = ${p1}, p2 = ${p2}, step ${step}`);
      const [left, probability] = step === 0 ? [0, p1] : step === 1 ? [0, p2] : [want, 1];
      ours.advance(left, probability);
      theirs.advance(left, probability);
    }
  }
  assert.ok(found >= 10, `${found} rounding cases`);
});
