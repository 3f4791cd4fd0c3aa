// g_s told which level it decodes from (mirrors sicc/model/level_film.py): a bundle of weights with
// level tables (format sicc-web-2) scales and shifts, per latent channel, the latent that g_s gets
// for a decode of the first L levels (1..levels):
//
//     y' = y * (1 + scale[L-1]) + shift[L-1]     (float32: 1 + scale first, then each product and sum
//                                                  rounded to float32, no fused multiply-add)
//
// Without tables, or for a decode of no level, g_s gets the latent as it is.
//
// A bundle of format sicc-web-3 also has inner tables (levels, layers, hidden), and its g_s graph
// two more inputs, film_gain and film_shift (layers, hidden), that scale and shift g_s's hidden
// layers: for a decode of L levels they get gain = 1 + inner_scale[L-1] (float32) and
// inner_shift[L-1], and for a decode of no level ones and zeros (the graph needs them every time).

/** The names of the g_s graph's inputs that take the inner tables' rows (GAIN_INPUT, SHIFT_INPUT). */
export const GAIN_INPUT = 'film_gain';
export const SHIFT_INPUT = 'film_shift';

export class LevelFilm {
  /**
   * `scale`, `shift`: the tables ((levels, latent), row-major), float32 values held in any array;
   * `inner` (or null): {scale, shift, layers, hidden}, the inner tables ((levels, layers, hidden)).
   */
  constructor(scale, shift, levels, latent, inner = null) {
    if (scale.length !== levels * latent || shift.length !== levels * latent) {
      throw new RangeError(`level tables of ${scale.length} and ${shift.length} values, not ${levels} x ${latent}`);
    }
    this.latent = latent;
    this.gain = gainOf(scale);
    this.shift = Float32Array.from(shift);
    this.layers = 0;
    this.hidden = 0;
    this.innerGain = null; // null: a g_s graph without the inner inputs
    this.innerShift = null;
    if (inner) {
      const { layers, hidden } = inner, count = levels * layers * hidden;
      if (!(layers >= 1 && hidden >= 1) || inner.scale.length !== count || inner.shift.length !== count) {
        throw new RangeError(`inner level tables of ${inner.scale.length} and ${inner.shift.length} values, not ${levels} x ${layers} x ${hidden}`);
      }
      this.layers = layers;
      this.hidden = hidden;
      this.innerGain = gainOf(inner.scale);
      this.innerShift = Float32Array.from(inner.shift);
    }
  }

  get hasInner() {
    return this.innerGain !== null;
  }

  /**
   * The g_s graph's extra inputs for a decode of `level` levels ({} without inner tables): by input
   * name, {data: Float32Array, dims: [layers, hidden]}, the level's rows or the identity for level 0.
   */
  innerRows(level) {
    if (!this.hasInner) return {};
    const n = this.layers * this.hidden, dims = [this.layers, this.hidden];
    if (level <= 0) {
      return { [GAIN_INPUT]: { data: new Float32Array(n).fill(1), dims }, [SHIFT_INPUT]: { data: new Float32Array(n), dims } };
    }
    const start = (level - 1) * n; // copies: a tensor gets an array of its own, not a view into the table
    return {
      [GAIN_INPUT]: { data: this.innerGain.slice(start, start + n), dims },
      [SHIFT_INPUT]: { data: this.innerShift.slice(start, start + n), dims },
    };
  }

  /** Scale and shift a (1, C, h, w) Float32Array tile in place for a decode of `level` levels. */
  apply(data, dims, level) {
    if (level <= 0) return data;
    const [, c, h, w] = dims, n = h * w, row = (level - 1) * this.latent;
    if (c !== this.latent) throw new RangeError(`a tile of ${c} channels for level tables of ${this.latent}`);
    for (let ch = 0; ch < c; ch++) {
      const g = this.gain[row + ch], b = this.shift[row + ch];
      for (let i = ch * n, end = i + n; i < end; i++) data[i] = Math.fround(Math.fround(data[i] * g) + b);
    }
    return data;
  }
}

/** 1 + scale per value, computed in float32 as the Python does (np.float32(1) + a float32 table). */
function gainOf(scale) {
  const gain = new Float32Array(scale.length);
  for (let i = 0; i < scale.length; i++) gain[i] = Math.fround(1 + Math.fround(scale[i]));
  return gain;
}

/**
 * g_s of a latent decoded from `level` levels (film_transform): `synthesis` itself without tables
 * or for level 0, else a synthesis whose run() scales and shifts each tile first. With inner tables
 * run() also gives g_s the level's inner rows, for level 0 too (the graph has those inputs).
 */
export function filmTransform(synthesis, film, level) {
  if (!film || !synthesis || (level <= 0 && !film.hasInner)) return synthesis;
  if (!film.hasInner) return { run: (data, dims) => synthesis.run(film.apply(data, dims, level), dims) };
  const feeds = film.innerRows(level);
  return { run: (data, dims) => synthesis.run(film.apply(data, dims, level), dims, feeds) };
}
