// The decode pipeline (mirrors the decode half of sicc/codec.py): container bytes -> coded
// levels -> integer latents (exact) -> sampled missing levels (seeded) -> g_s -> pixels.
//
// Levels can be added one at a time as their bytes arrive (LatentDecoder), which is how the page
// shows level 1 before the download ends.

import * as container from './container.js';
import { CodingError, Y_BOUND, decodeCategorical, decodeGaussian } from './range_coding.js';
import { CorruptError, UnsupportedError } from './errors.js';
import { hyperSize, latentSize } from './geometry.js';
import { filmTransform } from './level_film.js';
import { Z_BOUND } from './probability.js';
import { rint, seedGenerator, uniform } from './sampler.js';
import { Synthesis } from './transforms.js';
import { SYNTHESIS_HALO, TILE_LATENT, tiledSynthesis } from './tiling.js';

/** sicc.model.config: the spread of synonymous samples, and of a single decode when none is given. */
export const SAMPLES_SPREAD = 2.0;
export const SINGLE_SPREAD = 0.0;
export const DEFAULT_SPREAD = SAMPLES_SPREAD;

/** `spread` where given, else SINGLE_SPREAD for one decode and SAMPLES_SPREAD for several (default_spread). */
export function defaultSpread(spread, samples) {
  if (spread !== null && spread !== undefined) return spread;
  return samples === 1 ? SINGLE_SPREAD : SAMPLES_SPREAD;
}

/** Integer y of the levels decoded so far, from one parsed file's header and hyperprior. */
export class LatentDecoder {
  constructor(codec, parsed) {
    const { header } = parsed;
    this.codec = codec;
    this.config = codec.config;
    [this.h, this.w] = latentSize(header.height, header.width);
    const [zh, zw] = hyperSize(header.height, header.width);
    let symbols;
    try {
      symbols = decodeCategorical(parsed.hyper, codec.probability.zFrequencies, zh * zw);
    } catch (error) {
      if (error instanceof CodingError) throw new CorruptError(`hyperprior is corrupt: ${error.message}`);
      throw error;
    }
    for (let i = 0; i < symbols.length; i++) symbols[i] -= Z_BOUND;
    this.z = symbols;
    this.hyper = codec.probability.hyper(symbols, zh, zw);
    this.y = new Int16Array(this.config.latent * this.h * this.w);
    this.levels = 0;
  }

  /** Decode the next level from its coded payload (the LEVL payload after the level byte). */
  addLevel(payload) {
    const index = this.levels;
    const g = this.config.group_size, n = g * this.h * this.w;
    const [means, scales] = this.codec.probability.levelParameters(this.y, this.hyper, index);
    let symbols;
    try {
      symbols = decodeGaussian(payload, means, scales);
    } catch (error) {
      if (error instanceof CodingError) throw new CorruptError(`level ${index + 1} is corrupt: ${error.message}`);
      throw error;
    }
    this.y.set(symbols, index * n);
    this.levels += 1;
  }

  /** The coded latents so far (levels*G, h, w) as Int16Array (a copy). */
  coded() {
    const n = this.config.group_size * this.h * this.w;
    return this.y.slice(0, this.levels * n);
  }
}

export class Codec {
  constructor(bundle, synthesis) {
    this.bundle = bundle;
    this.modelId = bundle.modelId;
    this.config = bundle.manifest.config;
    this.probability = bundle.probability;
    this.levelFilm = bundle.levelFilm ?? null; // null: g_s sees the latent as it is
    this.synthesis = synthesis;
  }

  /** A codec from a loaded bundle (bundle.js) and the onnxruntime module. */
  static async create(bundle, ort, options = {}) {
    return new Codec(bundle, ort ? await Synthesis.create(ort, bundle.synthesisGraph, options) : null);
  }

  /**
   * Run every stage once on a small made-up latent (its results are thrown away), so that the
   * first real decode does not pay for compiling the JavaScript hot loops and for onnxruntime's
   * first run: the page runs it once the model is loaded. `latentSide` latents a side (the
   * g_s tile is the size of a whole tile with its halo).
   */
  async warmUp(latentSide = 16) {
    const { hyper: cz, latent: c, levels } = this.config;
    const zs = Math.max(1, latentSide >> 2);
    const z = new Int32Array(cz * zs * zs);
    const hyper = this.probability.hyper(z, zs, zs);
    const y = new Int16Array(c * hyper.h * hyper.w);
    for (let index = 0; index < levels; index++) this.probability.levelParameters(y, hyper, index);
    if (this.synthesis) {
      const side = TILE_LATENT + 2 * SYNTHESIS_HALO;
      // Through the level tables as a decode of no level: a g_s with inner tables needs their rows.
      await filmTransform(this.synthesis, this.levelFilm, 0).run(new Float32Array(c * side * side), [1, c, side, side]);
    }
  }

  /**
   * Parse (Uint8Array), check that this bundle's model made the file, and collect the warnings
   * Python gives for a cut or damaged file. Returns {parsed, warnings}.
   */
  parse(data, { strict = false, maxPixels = container.MAX_IMAGE_PIXELS } = {}) {
    const parsed = container.parse(data, { maxPixels, strict });
    const { header } = parsed;
    if (header.modelId !== this.modelId || header.modelLevels !== this.config.levels) {
      throw new UnsupportedError(`file was encoded with model ${header.modelId}, this sicc has model ${this.modelId}`);
    }
    const warnings = [];
    if (parsed.truncated) {
      warnings.push(`file is truncated inside level ${parsed.levels.length + 1}; decoding the ${parsed.levels.length} complete levels`);
    }
    if (parsed.corruptLevel !== null) {
      warnings.push(`level ${parsed.corruptLevel} is corrupt (${parsed.corruptReason}); decoding the ${parsed.levels.length} levels before it`);
    }
    return { parsed, warnings };
  }

  /**
   * Integer y of levels 1..`level` (codec.decode_latents). A level that passes its CRC but does
   * not decode is an error when `strict`, else a warning and the levels before it.
   * Returns {decoder: LatentDecoder, warnings}.
   */
  decodeLatents(parsed, level, { strict = true } = {}) {
    const decoder = new LatentDecoder(this, parsed);
    const warnings = [];
    for (let index = 0; index < level; index++) {
      try {
        decoder.addLevel(parsed.levels[index]);
      } catch (error) {
        if (strict || !(error instanceof CorruptError) || !error.message.startsWith(`level ${index + 1} `)) throw error;
        const reason = error.message.slice(`level ${index + 1} is corrupt: `.length);
        warnings.push(`level ${index + 1} is corrupt (${reason}); decoding the ${index} levels before it`);
        break;
      }
    }
    return { decoder, warnings };
  }

  /**
   * The complete latent (Int16Array (C, h, w)): the first `levels` coded levels, then each
   * missing level as round(mean + spread * u), u ~ U(-1, 1) from `generator` (null or spread 0:
   * the mean).
   */
  completeLatent(decoder, spread, generator, levels = decoder.levels) {
    const g = this.config.group_size, n = g * decoder.h * decoder.w;
    if (!(levels >= 0 && levels <= decoder.levels)) throw new RangeError(`level ${levels} is not decoded`);
    const y = new Int16Array(this.config.latent * decoder.h * decoder.w);
    y.set(decoder.y.subarray(0, levels * n));
    for (let index = levels; index < this.config.levels; index++) {
      const means = this.probability.levelMeans(y, decoder.hyper, index);
      const noise = spread === 0 || generator === null ? null : uniform(generator, -1.0, 1.0, means.length);
      const base = index * n;
      for (let i = 0; i < n; i++) {
        const value = rint(noise ? means[i] + spread * noise[i] : means[i]);
        y[base + i] = value < -Y_BOUND ? -Y_BOUND : value > Y_BOUND ? Y_BOUND : value;
      }
    }
    return y;
  }

  /**
   * RGBA pixels of a complete latent completed from the first `level` coded levels (default: all the
   * decoder holds), cropped to the image; gray files as luma in R = G = B. A bundle with level tables
   * scales and shifts the latent for that level before g_s (level_film.js).
   */
  async synthesize(y, header, decoder, onTile = null, level = decoder.levels) {
    const synthesis = filmTransform(this.synthesis, this.levelFilm, level);
    const rgba = await tiledSynthesis(synthesis, y, this.config.latent, decoder.h, decoder.w, header.height, header.width, onTile);
    if (header.flags & container.FLAG_GRAYSCALE) toGray(rgba);
    return rgba;
  }

  /**
   * Decode `samples` reconstructions from the first `level` levels (default: all present), as
   * sicc.decode: sample k uses the stream (seed, k). Returns {images: [{width, height, rgba,
   * gray}], level, warnings, header}.
   */
  async decode(data, { samples = 1, seed = 0, spread = null, level = null, strict = false } = {}) {
    if (samples < 1) throw new RangeError('samples must be at least 1');
    if (seed < 0) throw new RangeError('seed must be a non-negative integer');
    spread = defaultSpread(spread, samples);
    if (!(spread >= 0 && Number.isFinite(spread))) throw new RangeError('spread must be a finite number >= 0');
    const { parsed, warnings } = this.parse(data, { strict });
    const available = parsed.levels.length;
    if (level === null) level = available;
    if (!(level >= 0 && level <= available)) throw new RangeError(`level ${level} is not in the file (it holds levels 0..${available})`);
    const { decoder, warnings: more } = this.decodeLatents(parsed, level, { strict });
    warnings.push(...more);
    if (decoder.levels === 0) warnings.push('no level decoded: the whole image is sampled from the hyperprior alone and will look like noise');
    const deterministic = spread === 0 || decoder.levels === this.config.levels;
    const images = [];
    for (let k = 0; k < (deterministic ? 1 : samples); k++) {
      const y = this.completeLatent(decoder, spread, deterministic ? null : seedGenerator(seed, k));
      const rgba = await this.synthesize(y, parsed.header, decoder, null, decoder.levels);
      images.push({ width: parsed.header.width, height: parsed.header.height, rgba, gray: Boolean(parsed.header.flags & container.FLAG_GRAYSCALE) });
    }
    while (images.length < samples) images.push(images[0]);
    return { images, level: decoder.levels, warnings, header: parsed.header };
  }
}

/**
 * Pillow's convert("L") of RGB, the gray of a grayscale file (formats/sic-v1.md, Flags):
 * L = (19595 R + 38470 G + 7471 B + 0x8000) >> 16, written to R, G and B.
 */
export function toGray(rgba) {
  for (let i = 0; i < rgba.length; i += 4) {
    const l = (rgba[i] * 19595 + rgba[i + 1] * 38470 + rgba[i + 2] * 7471 + 0x8000) >> 16;
    rgba[i] = rgba[i + 1] = rgba[i + 2] = l;
  }
}
