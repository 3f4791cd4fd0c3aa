// Bit-exact erf and exp for the Gaussian model of the range coder.
//
// The range coder's quantized Gaussian (constriction's LeakyQuantizer over
// `probability::Gaussian`) evaluates the CDF with the Rust `libm` crate's erf, which calls
// its exp; both are the classic fdlibm algorithms (Sun Microsystems, 1993/2004, freely
// granted; via FreeBSD msun and musl). The integer cumulative frequencies are
// `floor(free_weight * cdf)`, so a CDF that differs by one ulp can move a boundary by one and
// decode a different symbol. These functions therefore evaluate the same rational
// approximations with the same published coefficients in the same order, in IEEE double,
// instead of trusting a JavaScript engine's Math.exp (engines differ). Written for sicc from the
// algorithm's description; checked symbol for symbol against constriction in the tests.

const f64 = new Float64Array(1);
const u32 = new Uint32Array(f64.buffer);
const LITTLE = new Uint8Array(Uint16Array.of(1).buffer)[0] === 1;
const HI = LITTLE ? 1 : 0;
const LO = LITTLE ? 0 : 1;

function highWord(x) {
  f64[0] = x;
  return u32[HI];
}

function withLowWordZero(x) {
  f64[0] = x;
  u32[LO] = 0;
  return f64[0];
}

/** 2**k for integer k in the normal range (built from its bits: exact). */
function pow2(k) {
  u32[HI] = (0x3ff + k) << 20;
  u32[LO] = 0;
  return f64[0];
}

function scalbn(y, k) {
  // The arguments here never leave the normal range; split the factor so 2**k stays normal.
  if (k > 1023) return y * pow2(1023) * pow2(k - 1023);
  if (k < -1022) return y * pow2(-1022) * pow2(k + 1022);
  return y * pow2(k);
}

// exp: argument reduction x = k ln2 + r, then a degree-5 rational correction.
const LN2_HI = 6.93147180369123816490e-01;
const LN2_LO = 1.90821492927058770002e-10;
const INV_LN2 = 1.44269504088896338700e+00;
const E1 = 1.66666666666666019037e-01;
const E2 = -2.77777777770155933842e-03;
const E3 = 6.61375632143793436117e-05;
const E4 = -1.65339022054652515390e-06;
const E5 = 4.13813679705723846039e-08;

export function exp(x) {
  const top = highWord(x);
  const negative = top >>> 31;
  const ax = top & 0x7fffffff;
  if (ax >= 0x4086232b) {
    if (Number.isNaN(x)) return x;
    if (x > 709.782712893383973096) return Infinity;
    if (x < -745.13321910194110842) return 0;
  }
  let hi, lo, k;
  if (ax > 0x3fd62e42) {
    if (ax >= 0x3ff0a2b2) k = Math.trunc(INV_LN2 * x + (negative ? -0.5 : 0.5));
    else k = 1 - negative - negative;
    hi = x - k * LN2_HI;
    lo = k * LN2_LO;
    x = hi - lo;
  } else if (ax > 0x3e300000) {
    k = 0;
    hi = x;
    lo = 0;
  } else {
    return 1 + x;
  }
  const xx = x * x;
  const c = x - xx * (E1 + xx * (E2 + xx * (E3 + xx * (E4 + xx * E5))));
  const y = 1 + ((x * c) / (2 - c) - lo + hi);
  return k === 0 ? y : scalbn(y, k);
}

// erf on [0, 0.84375]: x + x*P(x^2)/Q(x^2)
const EFX8 = 1.02703333676410069053e+00;
const PP = [1.28379167095512558561e-01, -3.25042107247001499370e-01, -2.84817495755985104766e-02,
  -5.77027029648944159157e-03, -2.37630166566501626084e-05];
const QQ = [3.97917223959155352819e-01, 6.50222499887672944485e-02, 5.08130628187576562776e-03,
  1.32494738004321644526e-04, -3.96022827877536812320e-06];
// erf on [0.84375, 1.25]: erx + P(s)/Q(s), s = |x| - 1
const ERX = 8.45062911510467529297e-01;
const PA = [-2.36211856075265944077e-03, 4.14856118683748331666e-01, -3.72207876035701323847e-01,
  3.18346619901161753674e-01, -1.10894694282396677476e-01, 3.54783043256182359371e-02, -2.16637559486879084300e-03];
const QA = [1.06420880400844228286e-01, 5.40397917702171048937e-01, 7.18286544141962662868e-02,
  1.26171219808761642112e-01, 1.36370839120290507362e-02, 1.19844998467991074170e-02];
// erfc on [1.25, 1/0.35]
const RA = [-9.86494403484714822705e-03, -6.93858572707181764372e-01, -1.05586262253232909814e+01,
  -6.23753324503260060396e+01, -1.62396669462573470355e+02, -1.84605092906711035994e+02,
  -8.12874355063065934246e+01, -9.81432934416914548592e+00];
const SA = [1.96512716674392571292e+01, 1.37657754143519042600e+02, 4.34565877475229228821e+02,
  6.45387271733267880336e+02, 4.29008140027567833386e+02, 1.08635005541779435134e+02,
  6.57024977031928170135e+00, -6.04244152148580987438e-02];
// erfc on [1/0.35, 28]
const RB = [-9.86494292470009928597e-03, -7.99283237680523006574e-01, -1.77579549177547519889e+01,
  -1.60636384855821916062e+02, -6.37566443368389627722e+02, -1.02509513161107724954e+03, -4.83519191608651397019e+02];
const SB = [3.03380607434824582924e+01, 3.25792512996573918826e+02, 1.53672958608443695994e+03,
  3.19985821950859553908e+03, 2.55305040643316442583e+03, 4.74528541206955367215e+02, -2.24409524465858183362e+01];

/** c0 + s*(c1 + s*(c2 + ...)) evaluated innermost first, as the reference does. */
function horner(coefficients, s) {
  let acc = coefficients[coefficients.length - 1];
  for (let i = coefficients.length - 2; i >= 0; i--) acc = coefficients[i] + s * acc;
  return acc;
}

/** 1 + s*(c0 + s*(c1 + ...)). */
function hornerOne(coefficients, s) {
  return 1 + s * horner(coefficients, s);
}

function erfcTail(ax, x) {
  if (ax < 0x3ff40000) { // |x| < 1.25
    const s = Math.abs(x) - 1;
    return 1 - ERX - horner(PA, s) / hornerOne(QA, s);
  }
  x = Math.abs(x);
  const s = 1 / (x * x);
  let r, big;
  if (ax < 0x4006db6d) { // |x| < 1/0.35
    r = horner(RA, s);
    big = hornerOne(SA, s);
  } else {
    r = horner(RB, s);
    big = hornerOne(SB, s);
  }
  const z = withLowWordZero(x);
  return (exp(-z * z - 0.5625) * exp((z - x) * (z + x) + r / big)) / x;
}

export function erf(x) {
  const top = highWord(x);
  const negative = top >>> 31;
  const ax = top & 0x7fffffff;
  if (ax >= 0x7ff00000) return 1 - 2 * negative + 1 / x;
  if (ax < 0x3feb0000) { // |x| < 0.84375
    if (ax < 0x3e300000) return 0.125 * (8 * x + EFX8 * x);
    const z = x * x;
    return x + x * (horner(PP, z) / hornerOne(QQ, z));
  }
  const y = ax < 0x40180000 ? 1 - erfcTail(ax, x) : 1 - 2.2250738585072014e-308;
  return negative ? -y : y;
}
