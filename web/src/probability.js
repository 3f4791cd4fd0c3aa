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
  const out = new Tensor(o, ho, wo);
  const emit = (acc, oc) => {
    for (let y = 0; y < ho; y++) out.data.set(acc.subarray(y * wp, y * wp + wo), (oc * ho + y) * wo);
  };
  let first = 0;
  if (kh === 3 && kw === 3) {
    // the 3x3 kernels of sicc: four output channels at a time, all nine taps in one pass, so
    // that each input value loaded serves four accumulators
    const blocks = o >> 2;
    const acc = new Float64Array(4 * n);
    for (let block = 0; block < blocks; block++) {
      const oc = 4 * block;
      acc.fill(0);
      for (let ic = 0; ic < c; ic++) conv3x3x4(acc, n, padded, ic * plane, wp, weight, (oc * c + ic) * 9, c * 9);
      for (let j = 0; j < 4; j++) emit(acc.subarray(j * n, (j + 1) * n), oc + j);
    }
    first = 4 * blocks;
  }
  const acc = new Float64Array(n);
  for (let oc = first; oc < o; oc++) {
    acc.fill(0);
    for (let ic = 0; ic < c; ic++) {
      const base = ic * plane;
      const t = ((oc * c + ic) * kh) * kw;
      for (let i = 0; i < kh; i++) {
        for (let j = 0; j < kw; j++) {
          const k = weight[t + i * kw + j];
          if (k === 0) continue;
          const off = base + i * wp + j;
          for (let p = 0; p < n; p++) acc[p] += k * padded[off + p];
        }
      }
    }
    emit(acc, oc);
  }
  return out;
}

/**
 * acc[j * n + p] += the 3x3 taps of output channel j (0..3) on input plane `base` of `padded`
 * (row width wp) at flat position p; the weights of channel j start at t + j * stride.
 */
function conv3x3x4(acc, n, padded, base, wp, weight, t, stride) {
  const u = t + stride, v = t + 2 * stride, w = t + 3 * stride;
  const a0 = weight[t], a1 = weight[t + 1], a2 = weight[t + 2], a3 = weight[t + 3], a4 = weight[t + 4], a5 = weight[t + 5], a6 = weight[t + 6], a7 = weight[t + 7], a8 = weight[t + 8];
  const b0 = weight[u], b1 = weight[u + 1], b2 = weight[u + 2], b3 = weight[u + 3], b4 = weight[u + 4], b5 = weight[u + 5], b6 = weight[u + 6], b7 = weight[u + 7], b8 = weight[u + 8];
  const c0 = weight[v], c1 = weight[v + 1], c2 = weight[v + 2], c3 = weight[v + 3], c4 = weight[v + 4], c5 = weight[v + 5], c6 = weight[v + 6], c7 = weight[v + 7], c8 = weight[v + 8];
  const d0 = weight[w], d1 = weight[w + 1], d2 = weight[w + 2], d3 = weight[w + 3], d4 = weight[w + 4], d5 = weight[w + 5], d6 = weight[w + 6], d7 = weight[w + 7], d8 = weight[w + 8];
  const r1 = wp, r2 = 2 * wp, n2 = 2 * n, n3 = 3 * n;
  for (let p = 0, q = base; p < n; p++, q++) {
    const x0 = padded[q], x1 = padded[q + 1], x2 = padded[q + 2];
    const x3 = padded[q + r1], x4 = padded[q + r1 + 1], x5 = padded[q + r1 + 2];
    const x6 = padded[q + r2], x7 = padded[q + r2 + 1], x8 = padded[q + r2 + 2];
    acc[p] += a0 * x0 + a1 * x1 + a2 * x2 + a3 * x3 + a4 * x4 + a5 * x5 + a6 * x6 + a7 * x7 + a8 * x8;
    acc[p + n] += b0 * x0 + b1 * x1 + b2 * x2 + b3 * x3 + b4 * x4 + b5 * x5 + b6 * x6 + b7 * x7 + b8 * x8;
    acc[p + n2] += c0 * x0 + c1 * x1 + c2 * x2 + c3 * x3 + c4 * x4 + c5 * x5 + c6 * x6 + c7 * x7 + c8 * x8;
    acc[p + n3] += d0 * x0 + d1 * x1 + d2 * x2 + d3 * x3 + d4 * x4 + d5 * x5 + d6 * x6 + d7 * x7 + d8 * x8;
  }
}

/**
 * Transposed convolution (as torch) of `x` by weight (C, O, kh, kw).
 *
 * For each output channel and tap (a, b), the sum over input channels of weight * input is formed
 * over the whole input plane at once (long flat loops, four input channels per pass), then added
 * to the output positions i * stride + a - padding, j * stride + b - padding. The sums are exact
 * (below 2**52 in any order), so this gives the same integers as torch's order.
 */
export function convTranspose2d(x, weight, [c, o, kh, kw], stride, padding, outputPadding) {
  const { h, w } = x;
  const n = h * w;
  const ho = (h - 1) * stride - 2 * padding + kh + outputPadding;
  const wo = (w - 1) * stride - 2 * padding + kw + outputPadding;
  const out = new Tensor(o, ho, wo);
  const src = x.data, dst = out.data;
  const tap = new Float64Array(n);
  const step = o * kh * kw; // from one input channel's weight to the next
  for (let oc = 0; oc < o; oc++) {
    const obase = oc * ho * wo;
    for (let a = 0; a < kh; a++) {
      // input rows i whose output row i * stride + a - padding lies inside
      const i0 = Math.max(0, Math.ceil((padding - a) / stride)), i1 = Math.min(h, Math.floor((ho - 1 + padding - a) / stride) + 1);
      for (let b = 0; b < kw; b++) {
        const j0 = Math.max(0, Math.ceil((padding - b) / stride)), j1 = Math.min(w, Math.floor((wo - 1 + padding - b) / stride) + 1);
        tap.fill(0);
        let ic = 0;
        for (let t = (oc * kh + a) * kw + b; ic + 4 <= c; ic += 4, t += 4 * step) {
          const k0 = weight[t], k1 = weight[t + step], k2 = weight[t + 2 * step], k3 = weight[t + 3 * step];
          const s0 = ic * n, s1 = s0 + n, s2 = s1 + n, s3 = s2 + n;
          for (let p = 0; p < n; p++) tap[p] += k0 * src[s0 + p] + k1 * src[s1 + p] + k2 * src[s2 + p] + k3 * src[s3 + p];
        }
        for (; ic < c; ic++) {
          const k = weight[((ic * o + oc) * kh + a) * kw + b], s0 = ic * n;
          for (let p = 0; p < n; p++) tap[p] += k * src[s0 + p];
        }
        for (let i = i0; i < i1; i++) {
          const orow = obase + (i * stride + a - padding) * wo + b - padding, irow = i * w;
          for (let j = j0; j < j1; j++) dst[orow + j * stride] += tap[irow + j];
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

  /** The means of `level` only (Float64Array of G*h*w), as levelParameters gives them. */
  levelMeans(y, hyper, level) {
    const [meanFixed] = this.levelParametersFixed(y, hyper, level);
    const means = new Float64Array(meanFixed.length), unit = this.unit;
    for (let i = 0; i < means.length; i++) means[i] = meanFixed[i] / unit;
    return means;
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
