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

/**
 * Cross-correlation (as torch) of `x` by weight (O, C, kh, kw), stride 1, zero padding (ph, pw).
 *
 * As in Python's conv2d: the input is copied once into a zero-padded, row-major buffer (one spare
 * row), where tap (i, j) of every output position is the input at the constant offset
 * i * wp + j. Each (output, input, tap) is then one flat multiply-add over the whole image,
 * computed on the padded width; the kw - 1 wrap-around columns are dropped at the end. Every
 * partial sum of every order stays below 2**52 (the bound the Python loader proves), so summing
 * nine taps at once gives the same integers as any other order.
 */
export function conv2d(x, weight, [o, c, kh, kw], ph, pw) {
  const { h, w } = x;
  const hp = h + 2 * ph, wp = w + 2 * pw;
  const ho = hp - kh + 1, wo = wp - kw + 1;
  const plane = (hp + 1) * wp;
  const padded = new Float64Array(c * plane);
  for (let ic = 0; ic < c; ic++) {
    for (let r = 0; r < h; r++) {
      padded.set(x.data.subarray((ic * h + r) * w, (ic * h + r + 1) * w), ic * plane + (r + ph) * wp + pw);
    }
  }
  const n = ho * wp;
  const acc = new Float64Array(n);
  const out = new Tensor(o, ho, wo);
  for (let oc = 0; oc < o; oc++) {
    acc.fill(0);
    for (let ic = 0; ic < c; ic++) {
      const base = ic * plane;
      const t = ((oc * c + ic) * kh) * kw;
      if (kh === 3 && kw === 3) { // the 3x3 kernels of sicc: all nine taps in one pass
        const k0 = weight[t], k1 = weight[t + 1], k2 = weight[t + 2], k3 = weight[t + 3], k4 = weight[t + 4];
        const k5 = weight[t + 5], k6 = weight[t + 6], k7 = weight[t + 7], k8 = weight[t + 8];
        const r1 = wp, r2 = 2 * wp;
        for (let p = 0, q = base; p < n; p++, q++) {
          acc[p] += k0 * padded[q] + k1 * padded[q + 1] + k2 * padded[q + 2]
            + k3 * padded[q + r1] + k4 * padded[q + r1 + 1] + k5 * padded[q + r1 + 2]
            + k6 * padded[q + r2] + k7 * padded[q + r2 + 1] + k8 * padded[q + r2 + 2];
        }
        continue;
      }
      for (let i = 0; i < kh; i++) {
        for (let j = 0; j < kw; j++) {
          const k = weight[t + i * kw + j];
          if (k === 0) continue;
          const off = base + i * wp + j;
          for (let p = 0; p < n; p++) acc[p] += k * padded[off + p];
        }
      }
    }
    for (let y = 0; y < ho; y++) out.data.set(acc.subarray(y * wp, y * wp + wo), (oc * ho + y) * wo);
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
  for (let oc = 0; oc < o; oc++) {
    const obase = oc * ho * wo;
    for (let a = 0; a < kh; a++) {
      // input rows i whose output row i * stride + a - padding lies inside
      const i0 = Math.max(0, Math.ceil((padding - a) / stride)), i1 = Math.min(h, Math.floor((ho - 1 + padding - a) / stride) + 1);
      for (let b = 0; b < kw; b++) {
        const j0 = Math.max(0, Math.ceil((padding - b) / stride)), j1 = Math.min(w, Math.floor((wo - 1 + padding - b) / stride) + 1);
        for (let ic = 0; ic < c; ic++) {
          const k = weight[((ic * o + oc) * kh + a) * kw + b];
          if (k === 0) continue;
          const ibase = ic * h * w;
          for (let i = i0; i < i1; i++) {
            const orow = obase + (i * stride + a - padding) * wo + b - padding, irow = ibase + i * w;
            for (let j = j0; j < j1; j++) dst[orow + j * stride] += k * src[irow + j];
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
