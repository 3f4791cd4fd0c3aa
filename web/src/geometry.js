// The latent geometry of the SIC model (mirrors sicc/model/geometry.py).

export const LATENT_STRIDE = 16; // pixels per latent position of y
export const HYPER_STRIDE = 4; // latent positions of y per position of z
export const PAD_MULTIPLE = LATENT_STRIDE * HYPER_STRIDE; // 64

/** [height, width] an image is padded to before analysis. */
export function paddedSize(height, width) {
  return [Math.ceil(height / PAD_MULTIPLE) * PAD_MULTIPLE, Math.ceil(width / PAD_MULTIPLE) * PAD_MULTIPLE];
}

/** [rows, cols] of y. */
export function latentSize(height, width) {
  const [ph, pw] = paddedSize(height, width);
  return [ph / LATENT_STRIDE, pw / LATENT_STRIDE];
}

/** [rows, cols] of z. */
export function hyperSize(height, width) {
  const [ph, pw] = paddedSize(height, width);
  return [ph / PAD_MULTIPLE, pw / PAD_MULTIPLE];
}
