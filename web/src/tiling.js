// Run g_s tile by tile (mirrors sicc/tiling.py): the same grid as Python (about TILE_LATENT
// latents a side, split evenly, a halo of SYNTHESIS_HALO latents cropped away), so the pixels
// are computed from the same windows.

import { LATENT_STRIDE } from './geometry.js';
import { rint } from './sampler.js';

export const TILE_LATENT = 16;
export const SYNTHESIS_HALO = 2;

/** [start, stop) ranges covering 0..n in ceil(n / tile) nearly equal parts. */
export function split(n, tile) {
  const count = Math.max(1, Math.ceil(n / tile));
  const bounds = Array.from({ length: count + 1 }, (_, i) => Math.floor((i * n) / count));
  const out = [];
  for (let i = 0; i < count; i++) if (bounds[i] < bounds[i + 1]) out.push([bounds[i], bounds[i + 1]]);
  return out;
}

/** [core, padded] windows [top, bottom, left, right] covering an h x w grid. */
export function tileGrid(h, w, tile, halo) {
  const out = [];
  for (const [top, bottom] of split(h, tile)) {
    for (const [left, right] of split(w, tile)) {
      out.push([[top, bottom, left, right], [Math.max(top - halo, 0), Math.min(bottom + halo, h), Math.max(left - halo, 0), Math.min(right + halo, w)]]);
    }
  }
  return out;
}

/**
 * The RGBA pixels (Uint8ClampedArray, height*width*4) of a complete integer latent y
 * (Int16Array (C, h, w)). `onTile(done, total)` after each tile.
 */
export async function tiledSynthesis(synthesis, y, c, h, w, height, width, onTile = null) {
  const s = LATENT_STRIDE;
  const out = new Uint8ClampedArray(height * width * 4);
  const grid = tileGrid(h, w, TILE_LATENT, SYNTHESIS_HALO).filter(([core]) => core[0] * s < height && core[2] * s < width);
  let done = 0;
  for (const [[c0, c1, d0, d1], [t0, t1, l0, l1]] of grid) {
    const th = t1 - t0, tw = l1 - l0;
    const tile = new Float32Array(c * th * tw);
    for (let ch = 0; ch < c; ch++) {
      for (let r = 0; r < th; r++) {
        const src = (ch * h + t0 + r) * w + l0, dst = (ch * th + r) * tw;
        for (let q = 0; q < tw; q++) tile[dst + q] = y[src + q];
      }
    }
    const part = await synthesis.run(tile, [1, c, th, tw]);
    const [, , ph, pw] = part.dims;
    const data = part.data;
    const rows = Math.min(c1 * s, height) - c0 * s, cols = Math.min(d1 * s, width) - d0 * s;
    const r0 = (c0 - t0) * s, q0 = (d0 - l0) * s;
    for (let ch = 0; ch < 3; ch++) {
      for (let r = 0; r < rows; r++) {
        const src = (ch * ph + r0 + r) * pw + q0, dst = ((c0 * s + r) * width + d0 * s) * 4 + ch;
        for (let q = 0; q < cols; q++) {
          let v = data[src + q];
          v = v < 0 ? 0 : v > 1 ? 1 : v; // float32 clip, then float32 product, then rint (as numpy)
          out[dst + 4 * q] = rint(Math.fround(v * 255));
        }
      }
    }
    for (let r = 0; r < rows; r++) {
      const row = ((c0 * s + r) * width + d0 * s) * 4 + 3;
      for (let q = 0; q < cols; q++) out[row + 4 * q] = 255;
    }
    done += 1;
    if (onTile) await onTile(done, grid.length, [c0 * s, d0 * s, rows, cols], out);
  }
  return out;
}
