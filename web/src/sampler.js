// The seeded detail sampler (mirrors sicc/codec.py `_seed_generator` and `complete_latent`).
//
// Python draws the missing levels' detail from numpy's Generator(PCG64(SeedSequence(seed,
// spawn_key=(sample,)))): u = rng.uniform(-1, 1, shape), y = clip(rint(mean + spread * u)).
// This module reimplements exactly that stream so that the same file, seed and sample give the
// same latents in the browser: numpy's SeedSequence entropy mixing (32-bit hash mixing into a
// pool of four words, then generate_state), PCG64 (128-bit LCG, XSL-RR output, numpy's seeding
// from four 64-bit state words) and Generator.uniform ((next64 >> 11) * 2**-53, then
// low + (high - low) * u). 128-bit arithmetic uses BigInt; everything else is double or uint32.

const MASK32 = 0xffffffff;
const INIT_A = 0x43b0d7e5, MULT_A = 0x931e8875, INIT_B = 0x8b51f9dd, MULT_B = 0x58f38ded;
const MIX_MULT_L = 0xca01f9dd, MIX_MULT_R = 0x4973f715;
const POOL_SIZE = 4;

const mul32 = (a, b) => Math.imul(a, b) >>> 0;

/** A non-negative integer as little-endian 32-bit words ([0] for 0), as numpy coerces entropy. */
function toWords(n) {
  let v = BigInt(n);
  if (v < 0n) throw new RangeError('seed must be a non-negative integer');
  if (v === 0n) return [0];
  const words = [];
  while (v > 0n) { words.push(Number(v & 0xffffffffn)); v >>= 32n; }
  return words;
}

/** numpy.random.SeedSequence(entropy, spawn_key): the pool, and generate_state. */
export class SeedSequence {
  constructor(entropy, spawnKey = []) {
    let run = toWords(entropy);
    const spawn = spawnKey.flatMap(toWords);
    if (spawn.length && run.length < POOL_SIZE) run = run.concat(new Array(POOL_SIZE - run.length).fill(0));
    const assembled = run.concat(spawn);
    const pool = new Array(POOL_SIZE).fill(0);
    let hashConst = INIT_A;
    const hashmix = (value) => {
      value = (value ^ hashConst) >>> 0;
      hashConst = mul32(hashConst, MULT_A);
      value = mul32(value, hashConst);
      return (value ^ (value >>> 16)) >>> 0;
    };
    const mix = (x, y) => {
      const r = (mul32(MIX_MULT_L, x) - mul32(MIX_MULT_R, y)) >>> 0;
      return (r ^ (r >>> 16)) >>> 0;
    };
    for (let i = 0; i < POOL_SIZE; i++) pool[i] = hashmix(i < assembled.length ? assembled[i] : 0);
    for (let src = 0; src < POOL_SIZE; src++) {
      for (let dst = 0; dst < POOL_SIZE; dst++) if (src !== dst) pool[dst] = mix(pool[dst], hashmix(pool[src]));
    }
    for (let src = POOL_SIZE; src < assembled.length; src++) {
      for (let dst = 0; dst < POOL_SIZE; dst++) pool[dst] = mix(pool[dst], hashmix(assembled[src]));
    }
    this.pool = pool;
  }

  /** `n` uint32 words of state (generate_state(n, uint32)). */
  generateState32(n) {
    let hashConst = INIT_B;
    const out = new Array(n);
    for (let i = 0; i < n; i++) {
      let v = (this.pool[i % POOL_SIZE] ^ hashConst) >>> 0;
      hashConst = mul32(hashConst, MULT_B);
      v = mul32(v, hashConst);
      out[i] = (v ^ (v >>> 16)) >>> 0;
    }
    return out;
  }

  /** `n` uint64 words as BigInt (generate_state(n, uint64): pairs of words, low first). */
  generateState64(n) {
    const w = this.generateState32(2 * n);
    return Array.from({ length: n }, (_, i) => (BigInt(w[2 * i + 1]) << 32n) | BigInt(w[2 * i]));
  }
}

const MASK64 = (1n << 64n) - 1n;
const MASK128 = (1n << 128n) - 1n;
const PCG_MULT = (0x2360ed051fc65da4n << 64n) | 0x4385df649fccf645n;

/** numpy's PCG64 bit generator (pcg_setseq_128_xsl_rr_64), seeded from a SeedSequence. */
export class PCG64 {
  constructor(seedSequence) {
    const [s0, s1, i0, i1] = seedSequence.generateState64(4);
    const initState = (s0 << 64n) | s1, initSeq = (i0 << 64n) | i1;
    this.inc = ((initSeq << 1n) | 1n) & MASK128;
    this.state = 0n;
    this.step();
    this.state = (this.state + initState) & MASK128;
    this.step();
  }

  step() {
    this.state = (this.state * PCG_MULT + this.inc) & MASK128;
  }

  /** The next 64-bit output (as BigInt): step, then xor-shift-low and random rotation. */
  next64() {
    this.step();
    const s = this.state;
    const x = ((s >> 64n) ^ s) & MASK64;
    const rot = s >> 122n;
    return ((x >> rot) | (x << ((64n - rot) & 63n))) & MASK64;
  }

  /** A double in [0, 1): (next64 >> 11) * 2**-53. */
  nextDouble() {
    return Number(this.next64() >> 11n) * (1.0 / 9007199254740992.0);
  }
}

/** numpy Generator.uniform(low, high, n) of one stream: Float64Array. */
export function uniform(generator, low, high, n) {
  const out = new Float64Array(n);
  const range = high - low;
  for (let i = 0; i < n; i++) out[i] = low + range * generator.nextDouble();
  return out;
}

/** One independent stream per (seed, sample), as sicc.codec._seed_generator. */
export function seedGenerator(seed, sample) {
  return new PCG64(new SeedSequence(seed, [sample]));
}

/** numpy.rint: round half to even. */
export function rint(x) {
  const r = Math.round(x);
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}
