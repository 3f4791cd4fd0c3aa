// g_s told which level it decodes from (mirrors sicc/model/level_film.py): a bundle of weights with
// level tables (format sicc-web-2) scales and shifts, per latent channel, the latent that g_s gets
// for a decode of the first L levels (1..levels):
//
//     y' = y * (1 + scale[L-1]) + shift[L-1]     (float32: 1 + scale first, then each product and sum
//                                                  rounded to float32, no fused multiply-add)
//
// Without tables, or for a decode of no level, g_s gets the latent as it is.

export class LevelFilm {
  /** `scale`, `shift`: the tables ((levels, latent), row-major), float32 values held in any array. */
  constructor(scale, shift, levels, latent) {
    if (scale.length !== levels * latent || shift.length !== levels * latent) {
      throw new RangeError(`level tables of ${scale.length} and ${shift.length} values, not ${levels} x ${latent}`);
    }
    this.latent = latent;
    this.gain = new Float32Array(scale.length);
    for (let i = 0; i < scale.length; i++) this.gain[i] = Math.fround(1 + Math.fround(scale[i]));
    this.shift = Float32Array.from(shift);
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

/**
 * g_s of a latent decoded from `level` levels (film_transform): `synthesis` itself without tables
 * or for level 0, else a synthesis whose run() scales and shifts each tile first.
 */
export function filmTransform(synthesis, film, level) {
  if (!film || level <= 0 || !synthesis) return synthesis;
  return { run: (data, dims) => synthesis.run(film.apply(data, dims, level), dims) };
}
