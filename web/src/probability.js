// The probability model in exact integer arithmetic (mirrors sicc/model/probability.py).
//
// Every weight, bias and activation of h_s and of the level-causal context network is an integer
// in fixed point (weights with W = 12 fractional bits, activations with A = 8, biases A + W),
// held in float64 (Float64Array). The weights file's loader proves that no partial sum reaches
// 2**52, so every product and sum below is exact in IEEE double whatever the order: JavaScript
// numbers give the same integers as numpy's float64 products, bit for bit. After each layer the
// accumulator is rescaled with floor(acc / 2**W) and clipped to +-2**20 (ReLU: [0, 2**20]).
//
// The integer tables come from the web bundle (sicc/webexport.py writes them from the runtime's
// own ProbabilityModel): this module only evaluates them. Python evaluates in bands of rows to
// bound memory; the integers are the same as over the whole image, which is what this does.

export const ACTIVATION_LIMIT_BITS = 20;
export const Z_BOUND = 64;
export const SCALE_STEP_SHIFT = 2;

/** A (C, H, W) array of float64 values. */
export class Tensor {
  constructor(c, h, w, data = new Float64Array(c * h * w)) {
    this.c = c; this.h = h; this.w = w; this.data = data;
  }
}

/** Cross-correlation (as torch) of `x` by weight (O, C, kh, kw), stride 1, zero padding (ph, pw). */
export function conv2d(x, weight, [o, c, kh, kw], ph, pw) {
  const { h, w } = x;
  const ho = h + 2 * ph - kh + 1, wo = w + 2 * pw - kw + 1;
  const out = new Tensor(o, ho, wo);
  const src = x.data, dst = out.data;
  for (let oc = 0; oc < o; oc++) {
    const obase = oc * ho * wo;
    for (let ic = 0; ic < c; ic++) {
      const ibase = ic * h * w;
      for (let i = 0; i < kh; i++) {
        for (let j = 0; j < kw; j++) {
          const k = weight[((oc * c + ic) * kh + i) * kw + j];
          if (k === 0) continue;
          // output (y, x) reads input (y + i - ph, x + j - pw)
          const y0 = Math.max(0, ph - i), y1 = Math.min(ho, h + ph - i);
          const x0 = Math.max(0, pw - j), x1 = Math.min(wo, w + pw - j);
          for (let y = y0; y < y1; y++) {
            const orow = obase + y * wo, irow = ibase + (y + i - ph) * w + (j - pw);
            for (let xx = x0; xx < x1; xx++) dst[orow + xx] += k * src[irow + xx];
          }
        }
      }
    }
  }
  return out;
}

/** Transposed convolution (as torch) of `x` by weight (C, O, kh, kw). */
export function convTranspose2d(x, weight, [c, o, kh, kw], stride, padding, outputPadding) {
  const { h, w } = x;
  const ho = (h - 1) * stride - 2 * padding + kh + outputPadding;
  const wo = (w - 1) * stride - 2 * padding + kw + outputPadding;
  const out = new Tensor(o, ho, wo);
  const src = x.data, dst = out.data;
  for (let ic = 0; ic < c; ic++) {
    const ibase = ic * h * w;
    for (let oc = 0; oc < o; oc++) {
      const obase = oc * ho * wo;
      for (let a = 0; a < kh; a++) {
        for (let b = 0; b < kw; b++) {
          const k = weight[((ic * o + oc) * kh + a) * kw + b];
          if (k === 0) continue;
          for (let i = 0; i < h; i++) {
            const y = i * stride + a - padding;
            if (y < 0 || y >= ho) continue;
            const orow = obase + y * wo, irow = ibase + i * w;
            for (let j = 0; j < w; j++) {
              const xx = j * stride + b - padding;
              if (xx >= 0 && xx < wo) dst[orow + xx] += k * src[irow + j];
            }
          }
        }
      }
    }
  }
  return out;
}

/** out[o, p] = sum_c weight[o, c] * x[c, p] + bias[o] (a 1x1 convolution). */
function matmul(weight, bias, o, x) {
  const c = x.c, n = x.h * x.w;
  const out = new Tensor(o, x.h, x.w);
  for (let oc = 0; oc < o; oc++) {
    const row = out.data.subarray(oc * n, (oc + 1) * n);
    row.fill(bias[oc]);
    for (let ic = 0; ic < c; ic++) {
      const k = weight[oc * c + ic];
      if (k === 0) continue;
      const col = ic * n;
      for (let p = 0; p < n; p++) row[p] += k * x.data[col + p];
    }
  }
  return out;
}

export class ProbabilityModel {
  /**
   * `tables` (from the web bundle): {config, scaleOffset, scaleTable: Float64Array,
   * zFrequencies: [rows], hyperLayers: [{weight, shape, bias, transposed, stride, relu}],
   * levelLayers: [{causalW, causalShape, causalB, midW, midB, outW, outB}]}.
   */
  constructor(tables) {
    Object.assign(this, tables);
    this.aBits = tables.config.activation_bits;
    this.wBits = tables.config.weight_bits;
    this.unit = 2 ** this.aBits;
    this.wUnit = 2 ** this.wBits;
  }

  rescale(t, relu) {
    const d = t.data, limit = 2 ** ACTIVATION_LIMIT_BITS, low = relu ? 0 : -limit, div = this.wUnit;
    for (let i = 0; i < d.length; i++) {
      const v = Math.floor(d[i] / div);
      d[i] = v < low ? low : v > limit ? limit : v;
    }
    return t;
  }

  accumulate(layer, x) {
    const k = layer.shape[3] >> 1;
    const out = layer.transposed
      ? convTranspose2d(x, layer.weight, layer.shape, layer.stride, k, layer.stride - 1)
      : conv2d(x, layer.weight, layer.shape, k, k);
    const n = out.h * out.w;
    for (let o = 0; o < out.c; o++) {
      const b = layer.bias[o];
      for (let p = o * n; p < (o + 1) * n; p++) out.data[p] += b;
    }
    return out;
  }

  /** All hyper features (fixed point, (levels*K, h, w)) from integer z (Cz, zh, zw) as Int32Array. */
  hyper(z, zh, zw) {
    let x = new Tensor(z.length / (zh * zw), zh, zw);
    for (let i = 0; i < z.length; i++) x.data[i] = z[i] * this.unit;
    for (const layer of this.hyperLayers) x = this.rescale(this.accumulate(layer, x), layer.relu);
    return x;
  }

  /**
   * Fixed-point (mean, log-scale) of `level` (0-based) as two (G, h, w) tensors, given the integer
   * y `y` (Int16Array/Int32Array (C, h, w), levels before `level` filled) and the hyper features.
   */
  levelParametersFixed(y, hyper, level) {
    const { context_per_level: k, group_size: g } = this.config;
    const lw = this.levelLayers[level];
    const { h, w } = hyper;
    const n = h * w;
    let acc;
    if (level) {
      const previous = new Tensor(level * g, h, w);
      for (let i = 0; i < level * g * n; i++) previous.data[i] = y[i] * this.unit;
      acc = conv2d(previous, lw.causalW, lw.causalShape, 1, 1);
    } else {
      acc = new Tensor(k, h, w);
    }
    for (let o = 0; o < k; o++) {
      const b = lw.causalB[o], base = (level * k + o) * n;
      for (let p = 0; p < n; p++) acc.data[o * n + p] += hyper.data[base + p] * this.wUnit + b;
    }
    const hidden = this.rescale(acc, true);
    const mid = this.rescale(matmul(lw.midW, lw.midB, k, hidden), true);
    const params = this.rescale(matmul(lw.outW, lw.outB, 2 * g, mid), false);
    return [params.data.subarray(0, g * n), params.data.subarray(g * n, 2 * g * n)];
  }

  /** Gaussian scale of a fixed-point log-scale: the scale table entry of its bin. */
  scaleOf(logScaleFixed) {
    let index = Math.floor((logScaleFixed - this.scaleOffset) / 2 ** SCALE_STEP_SHIFT);
    const last = this.scaleTable.length - 1;
    index = index < 0 ? 0 : index > last ? last : index;
    return this.scaleTable[index];
  }

  /** [means, scales] of `level` as Float64Arrays of G*h*w, exactly as Python computes them. */
  levelParameters(y, hyper, level) {
    const [meanFixed, logScaleFixed] = this.levelParametersFixed(y, hyper, level);
    const means = new Float64Array(meanFixed.length), scales = new Float64Array(meanFixed.length);
    for (let i = 0; i < means.length; i++) {
      means[i] = meanFixed[i] / this.unit;
      scales[i] = this.scaleOf(logScaleFixed[i]);
    }
    return [means, scales];
  }
}
