// The preprocessing contract in the browser: a bit-exact port of osr_infer/preprocess.py
// (PreprocessContract.to_uint8 and normalize) and osr_infer/layout.py.
//
// "Bit-exact" means: for the same decoded pixels, toUint8 gives exactly the bytes Python's
// contract.to_uint8 gives. Every step mirrors the arithmetic of the code it ports:
//   - Pillow 13's C code (libImaging) is integer or double arithmetic, ported as such:
//     Resample.c (resize), BoxBlur.c, RankFilter.c (+ the edge-replicating expand),
//     AlphaComposite.c, Convert.c (RGB -> L is L24), Geometry.c (NEAREST resize);
//   - numpy float32 arithmetic is emulated with Math.fround after every operation (a Python
//     float meeting a float32 array or scalar is first cast to float32: NEP 50), and its
//     reductions in numpy's order: `.sum()` is pairwise (8 accumulators, blocks of 128),
//     `np.median` of an even count is float32 (a + b) / 2, `np.round`/`round` round half to even.
// Two results rest on libm calls whose last bit JavaScript does not guarantee to match C's.
// Math.tan in the line search: V8's tan differs from glibc's in the last bit for 19 of the 3,960
// tilts the search can use, yet every rounded pixel shift it makes (all coarse-grid widths 1-128,
// all tilts: 90,590 shifts) was checked identical to numpy's. Math.sin in the LANCZOS filter:
// 1.8 million fixed-point coefficients (900 size pairs) were checked identical to Resample.c's.
//
// Images: toUint8 takes {width, height, data, mode}: `data` is 8-bit RGBA, width * height * 4
// bytes (Uint8Array or Uint8ClampedArray), NOT premultiplied. `mode` says which PIL mode the
// decoded image had, because Python's path depends on it:
//   "RGBA", "LA", "P", "PA"  the image has transparency (or a palette): alpha is honoured by
//                            contract.alpha "flatten" (flatten_alpha), ignored by "drop";
//   "RGB"                    no alpha band: the alpha bytes are ignored (an RGB PNG's tRNS
//                            colour, like PIL, is not transparency);
//   "L", "1", "I;16"         grey, no alpha band: the grey level is R (G and B equal it; alpha
//                            ignored). For "I;16" the decoder has already rescaled 16-bit
//                            values as to_grayscale does, round(v / 65535 * 255) (png.js does).
// A missing mode counts as "RGBA": for an opaque image every mode gives the same result.
// Grey modes with an alpha band ("LA") have R = G = B, so RGB -> L (L24) gives the grey back.

const f32 = Math.fround;

/** PreprocessContract's version this port implements (osr_infer/preprocess.py CONTRACT_VERSION). */
export const CONTRACT_VERSION = 3;
/** Colour conversions by the number of channels they make (COLOR_MODES). */
const COLOR_MODES = { L: 1, RGB: 3 };
const KNOWN_STEPS = ["layout"];
const ALPHA_MODES = ["flatten", "drop"];
/** The resize methods a contract may name (preprocess._RESAMPLING); all are ported exactly. */
const RESIZE_METHODS = ["bicubic", "bilinear", "lanczos", "nearest"];
const FIELDS = ["size", "channels", "color", "resize", "mean", "std", "draft", "exif", "alpha", "steps", "version"];
const DEFAULTS = {
  size: 28, channels: 1, color: "L", resize: "bilinear", mean: [0.5], std: [0.5],
  draft: true, exif: true, alpha: "flatten", steps: [], version: CONTRACT_VERSION,
};
/** PIL modes toUint8 understands: whether the image has an alpha band, whether it is grey. */
const IMAGE_MODES = {
  RGBA: { alpha: true, grey: false },
  P: { alpha: true, grey: false },
  PA: { alpha: true, grey: false },
  LA: { alpha: true, grey: true },
  RGB: { alpha: false, grey: false },
  L: { alpha: false, grey: true },
  1: { alpha: false, grey: true },
  "I;16": { alpha: false, grey: true },
};

// ---------------------------------------------------------------------------------------------
// The contract

/**
 * PreprocessContract.from_dict + __post_init__: the model metadata's preprocessing dict (or its
 * JSON text) -> a frozen contract {size, channels, color, resize, mean, std, draft, exif, alpha,
 * steps, version, layout, pixelShape}. Older versions are upgraded as Python upgrades them;
 * anything Python would reject, or this port could not do exactly, throws an Error.
 */
export function parseContract(obj) {
  if (typeof obj === "string") obj = JSON.parse(obj);
  if (obj === null || typeof obj !== "object" || Array.isArray(obj)) {
    const kind = obj === null ? "null" : Array.isArray(obj) ? "a list" : typeof obj;
    throw new Error(`preprocessing must be a mapping, not ${kind}`);
  }
  const data = { ...obj };
  if ((data.version ?? 1) === 1 && "grayscale" in data) { // version 1: grayscale only, scalar mean/std
    delete data.grayscale;
    Object.assign(data, { color: "L", version: 2 });
  }
  if ((data.version ?? 1) === 2) { // version 2 applied no EXIF orientation and ignored alpha
    if (!("exif" in data)) data.exif = false;
    if (!("alpha" in data)) data.alpha = "drop";
    data.version = CONTRACT_VERSION;
  }
  const unknown = Object.keys(data).filter((k) => !FIELDS.includes(k)).sort();
  if (unknown.length) throw new Error(`unknown preprocessing fields: ${unknown.join(", ")}`);
  const c = { ...DEFAULTS, ...data };
  const number = (x) => (typeof x === "number" || (typeof x === "string" && x.trim()) ? Number(x) : NaN); // float()
  const numbers = (v) => (Array.isArray(v) ? v : [v]).map(number); // np.atleast_1d
  c.mean = numbers(c.mean);
  c.std = numbers(c.std);
  const problems = [];
  if (typeof c.size !== "number" || !Number.isInteger(c.size) || c.size < 4 || c.size > 1024) {
    problems.push(`size must be an integer in [4, 1024], not ${JSON.stringify(c.size)}`);
  }
  if (!(c.color in COLOR_MODES)) {
    problems.push(`unsupported colour conversion ${JSON.stringify(c.color)}; known: L, RGB`);
  } else if (c.channels !== COLOR_MODES[c.color]) {
    problems.push(`colour ${c.color} makes ${COLOR_MODES[c.color]} channel(s), not ${JSON.stringify(c.channels)}`);
  }
  if (!RESIZE_METHODS.includes(c.resize)) {
    problems.push(`unsupported resize method ${JSON.stringify(c.resize)}; known: ${RESIZE_METHODS.join(", ")}`);
  }
  if (c.mean.length !== c.channels || c.std.length !== c.channels) {
    problems.push(`mean and std need one value per channel (${c.channels}), got ${c.mean.length} and ${c.std.length}`);
  }
  if (!c.mean.every(Number.isFinite) || !c.std.every((s) => Number.isFinite(s) && s > 0)) {
    problems.push(`mean must be finite and std finite and positive, got mean ${c.mean}, std ${c.std}`);
  }
  if (!ALPHA_MODES.includes(c.alpha)) {
    problems.push(`unsupported alpha treatment ${JSON.stringify(c.alpha)}; known: flatten, drop`);
  }
  if (!Array.isArray(c.steps) || !c.steps.every((s) => typeof s === "string")) {
    problems.push(`steps must be a list of names, not ${JSON.stringify(c.steps)}`);
  } else {
    if (c.steps.includes("layout") && c.color !== "L") {
      problems.push("the layout step lays out greyscale characters: it needs color 'L'");
    }
    const unknownSteps = c.steps.filter((s) => !KNOWN_STEPS.includes(s));
    if (unknownSteps.length) {
      problems.push(`unknown preprocessing step(s) ${JSON.stringify(unknownSteps)}: written by a newer osr-toolkit?`);
    }
  }
  if (typeof c.version !== "number" || !Number.isInteger(c.version)) {
    problems.push(`version must be an integer, not ${JSON.stringify(c.version)}`);
  } else if (c.version > CONTRACT_VERSION) {
    problems.push(`preprocessing contract version ${c.version} is newer than this page's (${CONTRACT_VERSION}): `
      + "export the model again with this page's osr-toolkit");
  }
  if (problems.length) throw new Error("invalid preprocessing contract: " + problems.join("; "));
  c.steps = [...c.steps];
  c.layout = c.steps.includes("layout");
  c.pixelShape = c.channels === 1 ? [c.size, c.size] : [c.size, c.size, c.channels];
  Object.freeze(c.mean);
  Object.freeze(c.std);
  Object.freeze(c.steps);
  Object.freeze(c.pixelShape);
  return Object.freeze(c);
}

const asContract = (contract) => (Object.isFrozen(contract) && "pixelShape" in contract ? contract : parseContract(contract));

/**
 * PreprocessContract.to_uint8 (steps 3-5) on decoded pixels: flatten_alpha, to_grayscale or
 * to_rgb, then the layout step or a resize. Returns a Uint8Array of size * size (color L) or
 * size * size * 3 (RGB, HWC).
 */
export function toUint8(image, contract) {
  contract = asContract(contract);
  const { width: w, height: h, data } = image;
  if (!Number.isInteger(w) || !Number.isInteger(h) || w < 1 || h < 1) throw new Error(`bad image size ${w}x${h}`);
  if (!data || data.length !== w * h * 4) {
    throw new Error(`image data must be ${w}x${h}x4 RGBA bytes, got ${data ? data.length : "none"}`);
  }
  const mode = image.mode ?? "RGBA";
  const kind = IMAGE_MODES[mode];
  if (!kind) throw new Error(`unsupported image mode ${JSON.stringify(mode)}; known: ${Object.keys(IMAGE_MODES).join(", ")}`);

  // Step 3 (flatten_alpha) and the colour conversion of step 4, fused per pixel.
  const n = w * h;
  const flat = contract.alpha === "flatten" && kind.alpha ? flattenAlpha(data, n, kind.grey) : null;
  const rgba = flat ?? data; // after flattening: RGB in an RGBA layout (alpha unused)
  const grey = !flat && kind.grey; // the level is R (la2l, L as is); else RGB -> L is L24
  let converted;
  if (contract.color === "L") {
    const out = new Uint8Array(n);
    if (grey) for (let i = 0; i < n; i++) out[i] = rgba[4 * i];
    else for (let i = 0; i < n; i++) out[i] = rgbToL(rgba[4 * i], rgba[4 * i + 1], rgba[4 * i + 2]);
    converted = { w, h, c: 1, data: out };
  } else {
    const out = new Uint8Array(n * 3);
    for (let i = 0; i < n; i++) {
      const r = rgba[4 * i];
      out[3 * i] = r;
      out[3 * i + 1] = grey ? r : rgba[4 * i + 1];
      out[3 * i + 2] = grey ? r : rgba[4 * i + 2];
    }
    converted = { w, h, c: 3, data: out };
  }
  // Step 5: the layout step, or a resize (skipped at the contract's size).
  if (contract.layout) return layout(converted, contract.size, contract.resize);
  if (w === contract.size && h === contract.size) return converted.data;
  return resize(converted, contract.size, contract.size, contract.resize).data;
}

/**
 * PreprocessContract.normalize for one image: uint8 pixels of the contract's pixelShape ->
 * Float32Array (channels x size x size, NCHW without N): (pixel * scale - shift) in float32.
 */
export function normalize(pixels, contract) {
  contract = asContract(contract);
  const { size, channels } = contract;
  const plane = size * size;
  if (pixels.length !== plane * channels) throw new Error(`expected ${plane * channels} pixels, got ${pixels.length}`);
  const out = new Float32Array(plane * channels);
  for (let c = 0; c < channels; c++) {
    // np.float32(1.0 / (255.0 * std)) and np.float32(mean / std), computed in double first.
    const scale = f32(1.0 / (255.0 * contract.std[c]));
    const shift = f32(contract.mean[c] / contract.std[c]);
    for (let i = 0; i < plane; i++) out[c * plane + i] = f32(f32(pixels[i * channels + c] * scale) - shift);
  }
  return out;
}

// PIL's Image.Transpose for ImageOps.exif_transpose: orientation -> source pixel of output (x, y).
const TRANSPOSES = {
  2: [false, (x, y, W, H) => [W - 1 - x, y]], // FLIP_LEFT_RIGHT
  3: [false, (x, y, W, H) => [W - 1 - x, H - 1 - y]], // ROTATE_180
  4: [false, (x, y, W, H) => [x, H - 1 - y]], // FLIP_TOP_BOTTOM
  5: [true, (x, y, W, H) => [y, x]], // TRANSPOSE
  6: [true, (x, y, W, H) => [y, H - 1 - x]], // ROTATE_270 (a clockwise quarter turn)
  7: [true, (x, y, W, H) => [W - 1 - y, H - 1 - x]], // TRANSVERSE
  8: [true, (x, y, W, H) => [W - 1 - y, x]], // ROTATE_90 (an anticlockwise quarter turn)
};

/**
 * ImageOps.exif_transpose (contract step 2): the image turned upright for its EXIF orientation
 * (`orientation`, default image.orientation); orientations other than 2-8 leave it as it is.
 */
export function exifTranspose(image, orientation = image.orientation) {
  const t = TRANSPOSES[orientation];
  if (!t) return image;
  const [swap, source] = t;
  const { width: W, height: H, data } = image;
  const w = swap ? H : W;
  const h = swap ? W : H;
  const out = new Uint8Array(w * h * 4);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const [sx, sy] = source(x, y, W, H);
      out.set(data.subarray((sy * W + sx) * 4, (sy * W + sx) * 4 + 4), (y * w + x) * 4);
    }
  }
  return { ...image, width: w, height: h, data: out, orientation: 1 };
}

/**
 * Pillow's primitives as this module ports them, for tests (tests/web_contract_check.mjs): images
 * are {w, h, c (1 or 3), data (Uint8Array, HWC)}; filters are Resample.c's names and "nearest".
 */
export const internals = {
  resize: (im, xsize, ysize, method) => resize(im, xsize, ysize, method),
  boxBlur: (im, radius) => ({ ...im, data: boxBlur(im.data, im.w, im.h, radius) }),
  rankFilter3: (im, rank) => ({ ...im, data: rankFilter3(im.data, im.w, im.h, rank) }),
};

// ---------------------------------------------------------------------------------------------
// Colour and alpha (Convert.c, AlphaComposite.c, preprocess.flatten_alpha)

/** Convert.c rgb2l: ITU-R 601-2 luma in 16-bit fixed point (L24). */
function rgbToL(r, g, b) {
  return (r * 19595 + g * 38470 + b * 7471 + 0x8000) >> 16;
}

/**
 * preprocess.flatten_alpha on RGBA bytes: null when every pixel is opaque (the image is only
 * converted), else the image composited (Image.alpha_composite) onto white or black paper,
 * whichever its opaque content stands out from, as RGB in an RGBA layout.
 */
function flattenAlpha(data, n, grey) {
  let opaque = true;
  for (let i = 0; i < n; i++) if (data[4 * i + 3] !== 255) { opaque = false; break; }
  if (opaque) return null; // alpha.min() >= 1
  // alpha = A / 255 (float32); level = (luma * alpha).sum() / max(alpha.sum(), 1e-6) in float32.
  const alphaOf = new Float32Array(256).map((_, a) => a / 255);
  const alpha = new Float32Array(n);
  const weighted = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    const a = alphaOf[data[4 * i + 3]];
    const luma = grey ? data[4 * i] : rgbToL(data[4 * i], data[4 * i + 1], data[4 * i + 2]);
    alpha[i] = a;
    weighted[i] = luma * a; // stored as float32
  }
  const level = f32(sum32(weighted) / f32(Math.max(sum32(alpha), 1e-6)));
  const paper = level < 128 ? 255 : 0;
  const over = new Uint8Array(256 * 256); // [alpha * 256 + channel] -> the channel composited onto the paper
  for (let a = 0; a < 256; a++) for (let v = 0; v < 256; v++) over[a * 256 + v] = a === 0 ? paper : compositeOver(v, a, paper);
  const out = new Uint8Array(n * 4);
  for (let i = 0; i < n; i++) {
    const row = data[4 * i + 3] * 256;
    out[4 * i] = over[row + data[4 * i]];
    out[4 * i + 1] = over[row + data[4 * i + 1]];
    out[4 * i + 2] = over[row + data[4 * i + 2]];
    out[4 * i + 3] = 255;
  }
  return out;
}

/** AlphaComposite.c for a source channel of alpha `sa` over an opaque destination channel. */
function compositeOver(src, sa, dst) {
  const PRECISION_BITS = 7;
  const blend = 255 * (255 - sa); // dst alpha is 255
  const outa255 = sa * 255 + blend;
  const coef1 = Math.floor((sa * 255 * 255 * (1 << PRECISION_BITS)) / outa255);
  const coef2 = 255 * (1 << PRECISION_BITS) - coef1;
  const tmp = src * coef1 + dst * coef2 + (0x80 << PRECISION_BITS);
  return (((tmp >> 8) + tmp) >> 8) >> PRECISION_BITS; // SHIFTFORDIV255
}

// ---------------------------------------------------------------------------------------------
// numpy arithmetic

/**
 * numpy's pairwise summation (loops_utils.h @TYPE@_pairwise_sum) of a[off:off+n], every partial
 * sum rounded by `round` (Math.fround for float32, nothing for float64): under 8 values one after
 * the other, up to 128 in 8 interleaved accumulators, more split in two halves (the first a
 * multiple of 8). ndarray.sum() of a contiguous array is this.
 */
function pairwiseSum(a, round, off, n) {
  if (n < 8) {
    let res = 0;
    for (let i = 0; i < n; i++) res = round(res + a[off + i]);
    return res;
  }
  if (n <= 128) {
    let r0 = a[off], r1 = a[off + 1], r2 = a[off + 2], r3 = a[off + 3];
    let r4 = a[off + 4], r5 = a[off + 5], r6 = a[off + 6], r7 = a[off + 7];
    let i = 8;
    for (; i < n - (n % 8); i += 8) {
      const p = off + i;
      r0 = round(r0 + a[p]); r1 = round(r1 + a[p + 1]); r2 = round(r2 + a[p + 2]); r3 = round(r3 + a[p + 3]);
      r4 = round(r4 + a[p + 4]); r5 = round(r5 + a[p + 5]); r6 = round(r6 + a[p + 6]); r7 = round(r7 + a[p + 7]);
    }
    let res = round(round(round(r0 + r1) + round(r2 + r3)) + round(round(r4 + r5) + round(r6 + r7)));
    for (; i < n; i++) res = round(res + a[off + i]);
    return res;
  }
  let n2 = Math.floor(n / 2);
  n2 -= n2 % 8;
  return round(pairwiseSum(a, round, off, n2) + pairwiseSum(a, round, off + n2, n - n2));
}

const asIs = (x) => x;
/** ndarray.sum() of a contiguous float32 array. */
const sum32 = (a, off = 0, n = a.length) => pairwiseSum(a, f32, off, n);
/** ndarray.sum() of a contiguous float64 array. */
const sum64 = (a, off = 0, n = a.length) => pairwiseSum(a, asIs, off, n);

/** Python's round() and np.round: to the nearest integer, ties to even. */
function roundHalfEven(x) {
  const r = Math.round(x); // ties toward +infinity
  return r - x === 0.5 && r % 2 !== 0 ? r - 1 : r;
}

/** The k-th smallest value (np.partition(a, k)[k]) of a numeric array, which is reordered. */
function select(a, k) {
  let lo = 0;
  let hi = a.length - 1;
  while (lo < hi) {
    const pivot = a[(lo + hi) >> 1];
    let i = lo;
    let j = hi;
    while (i <= j) {
      while (a[i] < pivot) i++;
      while (pivot < a[j]) j--;
      if (i <= j) {
        const t = a[i];
        a[i] = a[j];
        a[j] = t;
        i++;
        j--;
      }
    }
    if (j < k) lo = i;
    if (k < i) hi = j;
  }
  return a[k];
}

/** np.median of a float32 array (copied): the middle value, or float32 (a + b) / 2 of the two. */
function median32(values) {
  const a = Float32Array.from(values);
  const m = a.length >> 1;
  const upper = select(a, m);
  if (a.length % 2) return upper;
  let lower = a[0];
  for (let i = 1; i < m; i++) if (a[i] > lower) lower = a[i]; // after select, a[:m] <= a[m]
  return f32(f32(lower + upper) / 2);
}

function max32(a) {
  let m = -Infinity;
  for (let i = 0; i < a.length; i++) if (a[i] > m) m = a[i];
  return m;
}

// ---------------------------------------------------------------------------------------------
// Pillow's resize (Resample.c, 8 bits per channel; Geometry.c for NEAREST)

// The filters of Resample.c, with their support.
const FILTERS = {
  box: { support: 0.5, f: (x) => (x > -0.5 && x <= 0.5 ? 1.0 : 0.0) },
  bilinear: {
    support: 1.0,
    f: (x) => {
      if (x < 0.0) x = -x;
      return x < 1.0 ? 1.0 - x : 0.0;
    },
  },
  bicubic: {
    support: 2.0,
    f: (x) => {
      const a = -0.5;
      if (x < 0.0) x = -x;
      if (x < 1.0) return ((a + 2.0) * x - (a + 3.0)) * x * x + 1;
      if (x < 2.0) return (((x - 5) * x + 8) * x - 4) * a;
      return 0.0;
    },
  },
  lanczos: {
    support: 3.0,
    // Math.sin for C's sin: a coefficient could differ only within an ulp of a rounding point of
    // the 22-bit fixed-point coefficients (none did in 1.8 million checked).
    f: (x) => (-3.0 <= x && x < 3.0 ? sinc(x) * sinc(x / 3) : 0.0),
  },
};

function sinc(x) {
  if (x === 0.0) return 1.0;
  x = x * Math.PI;
  return Math.sin(x) / x;
}

const PRECISION_BITS = 32 - 8 - 2;

/**
 * Resample.c precompute_coeffs + normalize_coeffs_8bpc: per output pixel, its first input pixel,
 * the count of input pixels and their fixed-point weights.
 */
function precomputeCoeffs(inSize, outSize, filter) {
  const scale = inSize / outSize; // box (0, inSize) as floats: exact
  const filterscale = scale < 1.0 ? 1.0 : scale;
  const support = filter.support * filterscale;
  const ksize = Math.ceil(support) * 2 + 1;
  const bounds = new Int32Array(outSize * 2);
  const kk = new Int32Array(outSize * ksize);
  const weights = new Float64Array(ksize);
  const invFilterscale = 1.0 / filterscale;
  for (let xx = 0; xx < outSize; xx++) {
    const center = 0 + (xx + 0.5) * scale;
    let ww = 0.0;
    let xmin = Math.trunc(center - support + 0.5); // C's (int) truncates toward zero
    if (xmin < 0) xmin = 0;
    let xmax = Math.trunc(center + support + 0.5);
    if (xmax > inSize) xmax = inSize;
    xmax -= xmin;
    for (let x = 0; x < xmax; x++) {
      const w = filter.f((x + xmin - center + 0.5) * invFilterscale);
      weights[x] = w;
      ww += w;
    }
    for (let x = 0; x < xmax; x++) {
      const k = ww !== 0.0 ? weights[x] / ww : weights[x];
      kk[xx * ksize + x] = k < 0 ? Math.trunc(-0.5 + k * (1 << PRECISION_BITS)) : Math.trunc(0.5 + k * (1 << PRECISION_BITS));
    }
    bounds[xx * 2] = xmin;
    bounds[xx * 2 + 1] = xmax;
  }
  return { ksize, bounds, kk };
}

/** Resample.c clip8: a fixed-point sum to a byte. */
function clip8(ss) {
  const v = ss >> PRECISION_BITS;
  return v < 0 ? 0 : v > 255 ? 255 : v;
}

/** _ImagingResampleHorizontal_8bpc over input rows [row0, row0 + rows). */
function resampleHorizontal(im, xsize, row0, rows, { ksize, bounds, kk }) {
  const { w, c, data } = im;
  const out = new Uint8Array(xsize * rows * c);
  for (let yy = 0; yy < rows; yy++) {
    const lineIn = (yy + row0) * w * c;
    const lineOut = yy * xsize * c;
    for (let xx = 0; xx < xsize; xx++) {
      const xmin = bounds[xx * 2];
      const xmax = bounds[xx * 2 + 1];
      const k = xx * ksize;
      for (let ch = 0; ch < c; ch++) {
        let ss = 1 << (PRECISION_BITS - 1);
        for (let x = 0; x < xmax; x++) ss += data[lineIn + (x + xmin) * c + ch] * kk[k + x];
        out[lineOut + xx * c + ch] = clip8(ss);
      }
    }
  }
  return { w: xsize, h: rows, c, data: out };
}

/** _ImagingResampleVertical_8bpc (bounds relative to the input's first row). */
function resampleVertical(im, ysize, { ksize, bounds, kk }, shift) {
  const { w, c, data } = im;
  const out = new Uint8Array(w * ysize * c);
  const stride = w * c;
  for (let yy = 0; yy < ysize; yy++) {
    const ymin = bounds[yy * 2] - shift;
    const ymax = bounds[yy * 2 + 1];
    const k = yy * ksize;
    for (let i = 0; i < stride; i++) {
      let ss = 1 << (PRECISION_BITS - 1);
      for (let y = 0; y < ymax; y++) ss += data[(y + ymin) * stride + i] * kk[k + y];
      out[yy * stride + i] = clip8(ss);
    }
  }
  return { w, h: ysize, c, data: out };
}

/** Image.resize(size, filter) of an 8-bit L (c = 1) or RGB (c = 3) image {w, h, c, data}. */
function resize(im, xsize, ysize, method) {
  if (im.w === xsize && im.h === ysize) return { ...im, data: im.data.slice() }; // Image.resize: a copy
  if (method === "nearest") return resizeNearest(im, xsize, ysize);
  const filter = FILTERS[method];
  if (!filter) throw new Error(`unsupported resize method ${JSON.stringify(method)}`);
  // ImagingResampleInner: the pass order decides the intermediate rounding.
  const needHorizontal = xsize !== im.w;
  const needVertical = ysize !== im.h;
  const horizontalFirst = !(im.h - ysize > 0 && im.h - ysize > (im.w - xsize) * 2);
  const vertical = (needHorizontal && horizontalFirst) || needVertical ? precomputeCoeffs(im.h, ysize, filter) : null;
  const horizontal = needHorizontal ? precomputeCoeffs(im.w, xsize, filter) : null;
  let out = im;
  if (horizontalFirst) {
    let first = 0;
    if (needHorizontal) { // only the rows the vertical pass reads
      first = vertical.bounds[0];
      const last = vertical.bounds[ysize * 2 - 2] + vertical.bounds[ysize * 2 - 1];
      out = resampleHorizontal(out, xsize, first, last - first, horizontal);
    }
    if (needVertical) out = resampleVertical(out, ysize, vertical, first);
  } else {
    if (needVertical) out = resampleVertical(out, ysize, vertical, 0);
    if (needHorizontal) out = resampleHorizontal(out, xsize, 0, ysize, horizontal);
  }
  return out === im ? { ...im, data: im.data.slice() } : out;
}

/** Image.resize with NEAREST: Geometry.c ImagingScaleAffine (accumulated double coordinates). */
function resizeNearest(im, xsize, ysize) {
  const { w, h, c, data } = im;
  const coord = (v) => (v < 0.0 ? -1 : Math.trunc(v)); // COORD
  const a0 = w / xsize;
  const a4 = h / ysize;
  const xintab = new Int32Array(xsize);
  let xmin = xsize;
  let xmax = 0;
  let xo = 0 + a0 * 0.5;
  for (let x = 0; x < xsize; x++) {
    const xin = coord(xo);
    if (xin >= 0 && xin < w) {
      xmax = x + 1;
      if (x < xmin) xmin = x;
      xintab[x] = xin;
    }
    xo += a0;
  }
  const out = new Uint8Array(xsize * ysize * c); // fill: zeros
  let yo = 0 + a4 * 0.5;
  for (let y = 0; y < ysize; y++) {
    const yi = coord(yo);
    if (yi >= 0 && yi < h) {
      for (let x = xmin; x < xmax; x++) {
        for (let ch = 0; ch < c; ch++) out[(y * xsize + x) * c + ch] = data[(yi * w + xintab[x]) * c + ch];
      }
    }
    yo += a4;
  }
  return { w: xsize, h: ysize, c, data: out };
}

// ---------------------------------------------------------------------------------------------
// Pillow's filters on 8-bit L images

/** ImageFilter.BoxBlur(radius) of an L image (BoxBlur.c, one pass each way, UINT32 arithmetic). */
function boxBlur(data, w, h, radius) {
  // ww = (UINT32)((float)(1 << 24) / (radius * 2 + 1)); fw = ((1 << 24) - (radius * 2 + 1) * ww) / 2.
  const ww = Math.trunc(f32((1 << 24) / f32(radius * 2 + 1)));
  const fw = (((1 << 24) - (radius * 2 + 1) * ww) >>> 0) >>> 1;
  const blurLines = (src, length, count, stride, step) => { // each line: src[start + i * step]
    const line = new Uint8Array(length);
    const out = new Uint8Array(length);
    const edgeA = Math.min(radius + 1, length);
    const edgeB = Math.max(length - radius - 1, 0);
    const result = new Uint8Array(src.length);
    for (let l = 0; l < count; l++) {
      for (let i = 0; i < length; i++) line[i] = src[l * stride + i * step];
      boxBlurLine(out, line, length - 1, radius, edgeA, edgeB, ww, fw);
      for (let i = 0; i < length; i++) result[l * stride + i * step] = out[i];
    }
    return result;
  };
  const horizontal = blurLines(data, w, h, w, 1);
  return blurLines(horizontal, h, w, 1, w); // BoxBlur.c transposes; the same as blurring columns
}

/** BoxBlur.c ImagingLineBoxBlur8. */
function boxBlurLine(lineOut, lineIn, lastx, radius, edgeA, edgeB, ww, fw) {
  let acc = lineIn[0] * (radius + 1);
  for (let x = 0; x < edgeA - 1; x++) acc += lineIn[x];
  acc += lineIn[lastx] * (radius - edgeA + 1);
  const save = (x, left, right) => { // ADD_FAR then SAVE, in UINT32
    const bulk = (Math.imul(acc, ww) + Math.imul(lineIn[left] + lineIn[right], fw)) >>> 0;
    lineOut[x] = ((bulk + (1 << 23)) >>> 0) >>> 24;
  };
  if (edgeA <= edgeB) {
    for (let x = 0; x < edgeA; x++) {
      acc += lineIn[x + radius] - lineIn[0];
      save(x, 0, x + radius + 1);
    }
    for (let x = edgeA; x < edgeB; x++) {
      acc += lineIn[x + radius] - lineIn[x - radius - 1];
      save(x, x - radius - 1, x + radius + 1);
    }
    for (let x = edgeB; x <= lastx; x++) {
      acc += lineIn[lastx] - lineIn[x - radius - 1];
      save(x, x - radius - 1, lastx);
    }
  } else {
    for (let x = 0; x < edgeB; x++) {
      acc += lineIn[x + radius] - lineIn[0];
      save(x, 0, x + radius + 1);
    }
    for (let x = edgeB; x < edgeA; x++) {
      acc += lineIn[lastx] - lineIn[0];
      save(x, 0, lastx);
    }
    for (let x = edgeA; x <= lastx; x++) {
      acc += lineIn[lastx] - lineIn[x - radius - 1];
      save(x, x - radius - 1, lastx);
    }
  }
}

/** ImageFilter.RankFilter(3, rank) of an L image: the image's edges replicated (expand), then RankFilter.c. */
function rankFilter3(data, w, h, rank) {
  const out = new Uint8Array(w * h);
  const window = new Uint8Array(9);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      let i = 0;
      for (let dy = -1; dy <= 1; dy++) {
        const yy = Math.min(h - 1, Math.max(0, y + dy));
        for (let dx = -1; dx <= 1; dx++) window[i++] = data[yy * w + Math.min(w - 1, Math.max(0, x + dx))];
      }
      window.sort();
      out[y * w + x] = window[rank];
    }
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// The layout step (osr_infer/layout.py), with its constants

const WORK_SIDE = 256;
const BOX_SHARE = 20 / 28;
const GRID_CELLS = 12;
const INK_FLOOR = 0.3;
const TRIM = 0.002;
const PAPER_RANK = 2;
const MEDIAN_RANK = 4;
const DENSITY_SHARE = 1 / 24;
const DENSITY_FLOOR = 0.3;
const LINE_SPAN = 0.75;
const LINE_BAND = 3;
const LINE_GRID = 128;
const LINE_THICKNESS = 2;
const LINE_TILT_DEG = 6.0;
const LINE_INK = 0.5;
const COMPONENT_GRID = 64;
const COMPONENT_REACH = 0.5;
const SMALL_SIDE = 64;
const TAIL_NOISE = 3.0;
const MIN_CONTRAST = 12.0;

/** layout._otsu: Otsu's threshold of values in [0, top] on a 256-bin histogram (float64). */
function otsu(values, top) {
  const t = Math.max(top, 1e-6);
  const factor = f32(256 / t);
  const weights = new Float64Array(256);
  for (let i = 0; i < values.length; i++) weights[Math.min(Math.trunc(f32(values[i] * factor)), 255)] += 1;
  const total = values.length;
  const centres = new Float64Array(256);
  const w0 = new Float64Array(256);
  const m0 = new Float64Array(256);
  let cw = 0;
  let cm = 0;
  for (let i = 0; i < 256; i++) {
    centres[i] = (i + 0.5) * (t / 256);
    cw += weights[i];
    cm += weights[i] * centres[i];
    w0[i] = cw;
    m0[i] = cm;
  }
  let best = 0;
  let bestValue = -Infinity;
  for (let i = 0; i < 256; i++) {
    const w1 = total - w0[i];
    const mean0 = m0[i] / Math.max(w0[i], 1e-12);
    const mean1 = (m0[255] - m0[i]) / Math.max(w1, 1e-12);
    const d = mean0 - mean1;
    const between = w0[i] * w1 * (d * d);
    if (between > bestValue) { // np.argmax: the first maximum
      bestValue = between;
      best = i;
    }
  }
  return centres[best];
}

/**
 * layout._local_level: the rank-th of the 3x3 coarse cell means around each place, upsampled
 * (a Float32Array), or one median level (a number) for small images.
 */
function localLevel(work, pixels, rank, narrowToMin) {
  const { w, h } = work;
  if (Math.max(w, h) < SMALL_SIDE) return select(Float32Array.from(pixels), pixels.length >> 1);
  const cell = Math.max(w, h) / GRID_CELLS;
  const gw = Math.max(1, roundHalfEven(w / cell));
  const gh = Math.max(1, roundHalfEven(h / cell));
  let coarse = resize(work, gw, gh, "box");
  if (Math.min(gw, gh) >= 3) {
    coarse = { ...coarse, data: rankFilter3(coarse.data, gw, gh, rank) };
  } else if (narrowToMin) {
    let min = 255;
    for (const v of coarse.data) if (v < min) min = v;
    coarse = { ...coarse, data: new Uint8Array(gw * gh).fill(min) };
  }
  return Float32Array.from(resize(coarse, w, h, "bilinear").data);
}

/** layout._ink_is_dark: the heavier tail of what differs from the local paper level is the ink's. */
function inkIsDark(work, pixels) {
  const n = pixels.length;
  const background = localLevel(work, pixels, MEDIAN_RANK, false);
  const residual = new Float32Array(n);
  if (typeof background === "number") for (let i = 0; i < n; i++) residual[i] = pixels[i] - background;
  else for (let i = 0; i < n; i++) residual[i] = pixels[i] - background[i];
  const centre = median32(residual);
  const deviation = new Float32Array(n);
  for (let i = 0; i < n; i++) deviation[i] = Math.abs(f32(residual[i] - centre));
  const noise = 1.4826 * median32(deviation) + 0.5;
  const tail = f32(TAIL_NOISE * noise);
  const bright = new Float32Array(n);
  const dark = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    bright[i] = Math.max(f32(f32(residual[i] - centre) - tail), 0);
    dark[i] = Math.max(f32(f32(centre - residual[i]) - tail), 0);
  }
  return sum32(dark) > sum32(bright);
}

/** layout._run_lengths along one line: for each marked cell, the length of its run of marks. */
function runLengths(marks, start, length, step, out) {
  let i = 0;
  while (i < length) {
    if (!marks[start + i * step]) {
      out[i++] = 0;
      continue;
    }
    let j = i;
    while (j < length && marks[start + j * step]) j++;
    for (let k = i; k < j; k++) out[k] = j - i;
    i = j;
  }
  return out;
}

/**
 * layout._horizontal_lines on a boolean grid (h x w, Uint8Array): cells on straight lines across
 * at least LINE_SPAN of the width, at tilts up to LINE_TILT_DEG (each tilt shears the grid so
 * that a line at that tilt is a row; a band of LINE_BAND rows is searched for a long run).
 */
function horizontalLines(strokes, h, w) {
  const found = new Uint8Array(h * w);
  let count = 0;
  for (const v of strokes) count += v;
  const span = LINE_SPAN * w;
  if (count < span) return found;
  const half = LINE_BAND >> 1;
  const degrees = Math.atan((half + 0.5) / span) * (180 / Math.PI); // math.degrees(math.atan(...))
  const steps = Math.max(1, Math.ceil(LINE_TILT_DEG / degrees));
  const num = 2 * steps + 1;
  const step = (2 * LINE_TILT_DEG) / (num - 1); // np.linspace(-6, 6, num): i * step + start, the last = stop
  const shift = new Int32Array(w);
  const sheared = new Uint8Array(h * w);
  const band = new Uint8Array(h * w);
  const runs = new Int32Array(w);
  for (let t = 0; t < num; t++) {
    const tilt = t === num - 1 ? LINE_TILT_DEG : t * step + -LINE_TILT_DEG;
    // Math.tan may differ from C's tan in the last bit; the rounded shifts were checked identical (header).
    const slope = Math.tan(tilt * (Math.PI / 180));
    for (let c = 0; c < w; c++) shift[c] = roundHalfEven((c - (w >> 1)) * slope);
    for (let r = 0; r < h; r++) {
      for (let c = 0; c < w; c++) {
        const source = r + shift[c];
        sheared[r * w + c] = source >= 0 && source < h ? strokes[source * w + c] : 0;
      }
    }
    let anyCandidate = false;
    const candidate = new Uint8Array(h);
    for (let r = 0; r < h; r++) {
      let inBand = 0;
      for (let c = 0; c < w; c++) {
        let v = 0;
        for (let k = r - half; k <= r + half; k++) if (k >= 0 && k < h && sheared[k * w + c]) v = 1;
        band[r * w + c] = v;
        inBand += v;
      }
      if (inBand >= span) candidate[r] = anyCandidate = true;
    }
    if (!anyCandidate) continue;
    for (let r = 0; r < h; r++) {
      if (!candidate[r]) continue;
      runLengths(band, r * w, w, 1, runs);
      for (let c = 0; c < w; c++) {
        if (sheared[r * w + c] && runs[c] >= span) found[(r + shift[c]) * w + c] = 1;
      }
    }
  }
  return found;
}

function transposeGrid(grid, h, w) {
  const out = new Uint8Array(h * w);
  for (let r = 0; r < h; r++) for (let c = 0; c < w; c++) out[c * h + r] = grid[r * w + c];
  return out;
}

/** layout._blocks geometry: the block side and grid size for an h x w array cut into at most `grid` blocks a side. */
function blocks(h, w, grid) {
  const cell = Math.max(1, Math.ceil(Math.max(h, w) / grid));
  return { cell, gh: Math.ceil(h / cell), gw: Math.ceil(w / cell) };
}

/** layout._straight_lines: the marks on straight lines across the image (both ways), found on a coarse grid. */
function straightLines(marks, h, w) {
  const { cell, gh, gw } = blocks(h, w, LINE_GRID);
  const coarse = new Uint8Array(gh * gw);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) if (marks[y * w + x]) coarse[Math.floor(y / cell) * gw + Math.floor(x / cell)] = 1;
  }
  const thin = LINE_THICKNESS * cell;
  const lines = new Uint8Array(h * w);
  const orientations = [
    // Horizontal lines keep what runs far vertically (a crossing stroke), vertical ones what runs far horizontally.
    [horizontalLines(coarse, gh, gw), "columns"],
    [transposeGrid(horizontalLines(transposeGrid(coarse, gh, gw), gw, gh), gw, gh), "rows"],
  ];
  for (const [found, across] of orientations) {
    if (!found.some((v) => v)) continue;
    const runs = new Int32Array(h * w);
    if (across === "columns") {
      const column = new Int32Array(h);
      for (let x = 0; x < w; x++) {
        runLengths(marks, x, h, w, column);
        for (let y = 0; y < h; y++) runs[y * w + x] = column[y];
      }
    } else {
      for (let y = 0; y < h; y++) runLengths(marks, y * w, w, 1, runs.subarray(y * w, (y + 1) * w));
    }
    for (let y = 0; y < h; y++) {
      for (let x = 0; x < w; x++) {
        const i = y * w + x;
        if (found[Math.floor(y / cell) * gw + Math.floor(x / cell)] && marks[i] && runs[i] <= thin) lines[i] = 1;
      }
    }
  }
  return lines;
}

/**
 * layout._character_mask: the heaviest cluster of ink on a coarse grid (8-connected after a
 * one-cell dilation) and the clusters within its bounding box grown by COMPONENT_REACH.
 * layout._components labels each cluster by its last cell in raster order (plus one): so here,
 * which decides np.argmax's choice between equally heavy clusters.
 */
function characterMask(mass, h, w) {
  const { cell, gh, gw } = blocks(h, w, COMPONENT_GRID);
  const cells = new Float64Array(gh * gw); // integer-valued sums: exact in any order
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) cells[Math.floor(y / cell) * gw + Math.floor(x / cell)] += mass[y * w + x];
  }
  const near = new Uint8Array(gh * gw);
  for (let y = 0; y < gh; y++) {
    for (let x = 0; x < gw; x++) {
      if (!(cells[y * gw + x] > 0)) continue;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy >= 0 && yy < gh && xx >= 0 && xx < gw) near[yy * gw + xx] = 1;
        }
      }
    }
  }
  // Connected components (8-neighbours); each labelled with its largest cell index + 1.
  const labels = new Int32Array(gh * gw);
  const stack = [];
  const members = [];
  const components = []; // {label, weight, top, left, bottom, right}
  for (let start = 0; start < gh * gw; start++) {
    if (!near[start] || labels[start]) continue;
    labels[start] = -1;
    stack.push(start);
    members.length = 0;
    while (stack.length) {
      const i = stack.pop();
      members.push(i);
      const y = Math.floor(i / gw);
      const x = i % gw;
      for (let dy = -1; dy <= 1; dy++) {
        for (let dx = -1; dx <= 1; dx++) {
          const yy = y + dy;
          const xx = x + dx;
          if (yy < 0 || yy >= gh || xx < 0 || xx >= gw) continue;
          const j = yy * gw + xx;
          if (near[j] && !labels[j]) {
            labels[j] = -1;
            stack.push(j);
          }
        }
      }
    }
    const component = { label: Math.max(...members) + 1, weight: 0, top: gh, left: gw, bottom: -1, right: -1 };
    for (const i of members) {
      labels[i] = component.label;
      const y = Math.floor(i / gw);
      const x = i % gw;
      component.weight += cells[i]; // np.bincount(labels, weights=cells)
      component.top = Math.min(component.top, y);
      component.bottom = Math.max(component.bottom, y);
      component.left = Math.min(component.left, x);
      component.right = Math.max(component.right, x);
    }
    components.push(component);
  }
  components.sort((a, b) => a.label - b.label);
  let main = components[0];
  for (const c of components) if (c.weight > main.weight) main = c; // np.argmax: the first (lowest label)
  const reach = COMPONENT_REACH * Math.max(main.bottom - main.top + 1, main.right - main.left + 1);
  const kept = new Set();
  for (const c of components) {
    if (c.top >= main.top - reach && c.bottom <= main.bottom + reach && c.left >= main.left - reach
        && c.right <= main.right + reach && c.weight > 0) kept.add(c.label);
  }
  const mask = new Uint8Array(h * w);
  for (let y = 0; y < h; y++) {
    for (let x = 0; x < w; x++) {
      const g = Math.floor(y / cell) * gw + Math.floor(x / cell);
      mask[y * w + x] = kept.has(labels[g]) && cells[g] > 0 ? 1 : 0;
    }
  }
  return mask;
}

/** layout._mass_range: first and last index inside the TRIM..1-TRIM quantiles of a float32 mass profile. */
function massRange(profile) {
  const n = profile.length;
  const cumulative = new Float32Array(n); // np.cumsum: sequential
  let acc = 0;
  for (let i = 0; i < n; i++) cumulative[i] = acc = f32(acc + profile[i]);
  const total = cumulative[n - 1];
  const low = f32(f32(TRIM) * total); // np.float32 * Python float: in float32
  const high = f32(f32(1 - TRIM) * total);
  let start = 0; // np.searchsorted(side="right"): the count of values <= low
  while (start < n && cumulative[start] <= low) start++;
  let stop = 0; // side="left": the count of values < high
  while (stop < n && cumulative[stop] < high) stop++;
  return [start, Math.max(start, Math.min(stop, n - 1))];
}

/** layout.layout: a greyscale image {w, h, c: 1, data} laid out MNIST-style in a size x size uint8 frame. */
function layout(gray, size, method) {
  const { w, h } = gray;
  const scale = WORK_SIDE / Math.max(w, h);
  let work = scale < 1
    ? resize(gray, Math.max(1, roundHalfEven(w * scale)), Math.max(1, roundHalfEven(h * scale)), "box")
    : gray;
  const W = work.w;
  const H = work.h;
  const n = W * H;
  let pixels = Float32Array.from(work.data);
  if (inkIsDark(work, pixels)) {
    pixels = pixels.map((v) => 255 - v);
    work = { w: W, h: H, c: 1, data: Uint8Array.from(pixels) };
  }
  const paper = localLevel(work, pixels, PAPER_RANK, true);
  let ink = new Float32Array(n);
  for (let i = 0; i < n; i++) ink[i] = Math.max(pixels[i] - (typeof paper === "number" ? paper : paper[i]), 0);
  const peak = select(Float32Array.from(ink), n - 1 - Math.floor(n / 1000));
  if (peak < MIN_CONTRAST) { // a blank or flat image: nothing to lay out
    return resize({ w: W, h: H, c: 1, data: Uint8Array.from(ink) }, size, size, method).data;
  }
  const threshold = Math.max(otsu(ink, max32(ink)), INK_FLOOR * peak);
  const threshold32 = f32(threshold);
  const strokes = new Uint8Array(n);
  for (let i = 0; i < n; i++) strokes[i] = ink[i] > threshold32 ? 1 : 0;
  const radius = Math.max(1, roundHalfEven((Math.max(H, W) * DENSITY_SHARE) / 2));
  const density = boxBlur(strokes.map((v) => v * 255), W, H, radius);
  let densest = 0;
  for (const v of density) if (v > densest) densest = v;
  const denseFloor = f32(DENSITY_FLOOR * densest);
  let mass = new Float32Array(n);
  for (let i = 0; i < n; i++) mass[i] = strokes[i] && density[i] >= denseFloor ? ink[i] : 0;
  if (Math.max(H, W) >= SMALL_SIDE) { // ruled paper: long straight lines are no part of the character
    const lineInk = f32(LINE_INK * threshold);
    const lines = straightLines(ink.map((v) => (v > lineInk ? 1 : 0)), H, W);
    let offLines = false; // (mass * ~lines).sum() > 0, mass being >= 0
    for (let i = 0; i < n; i++) if (mass[i] > 0 && !lines[i]) { offLines = true; break; }
    if (offLines) {
      mass = mass.map((v, i) => (lines[i] ? 0 : v));
      ink = ink.map((v, i) => (lines[i] ? 0 : v));
    }
    if (mass.some((v) => v !== 0)) {
      const keep = characterMask(mass, H, W);
      mass = mass.map((v, i) => (keep[i] ? v : 0));
    }
  }
  // mass.sum(axis=1): pairwise per row; mass.sum(axis=0): row after row.
  const rowMass = new Float32Array(H);
  for (let y = 0; y < H; y++) rowMass[y] = sum32(mass, y * W, W);
  const columnMass = new Float32Array(W);
  for (let y = 0; y < H; y++) for (let x = 0; x < W; x++) columnMass[x] = columnMass[x] + mass[y * W + x];
  let [y0, y1] = massRange(rowMass);
  let [x0, x1] = massRange(columnMass);
  y0 = Math.max(0, y0 - 1); // one pixel of margin keeps the strokes' soft edges
  x0 = Math.max(0, x0 - 1);
  y1 = Math.min(H - 1, y1 + 1);
  x1 = Math.min(W - 1, x1 + 1);
  const background = threshold / 2;
  const bg32 = f32(background);
  const span32 = f32(Math.max(peak - background, 1e-6));
  const cropH = y1 - y0 + 1;
  const cropW = x1 - x0 + 1;
  const crop = new Uint8Array(cropH * cropW); // np.clip((ink - background) / span, 0, 1) * 255, then astype(uint8)
  for (let y = 0; y < cropH; y++) {
    for (let x = 0; x < cropW; x++) {
      const v = f32(f32(ink[(y + y0) * W + x + x0] - bg32) / span32);
      crop[y * cropW + x] = f32(Math.min(Math.max(v, 0), 1) * 255);
    }
  }
  const box = Math.max(1, roundHalfEven(size * BOX_SHARE));
  const fit = box / Math.max(cropH, cropW);
  const newW = Math.max(1, roundHalfEven(cropW * fit));
  const newH = Math.max(1, roundHalfEven(cropH * fit));
  const glyph = Float32Array.from(resize({ w: cropW, h: cropH, c: 1, data: crop }, newW, newH, method).data);
  const brightest = max32(glyph);
  if (brightest > 0 && brightest < 255) { // a thin stroke shrunk into the box fades: its core is full ink again
    const gain = f32(255 / brightest); // 255 / np.float32: float32
    for (let i = 0; i < glyph.length; i++) glyph[i] = glyph[i] * gain;
  }
  const total = sum32(glyph);
  let comY;
  let comX;
  if (total > 0) { // (rows * glyph).sum() / total: int64 * float32 is float64
    const weightedRows = new Float64Array(glyph.length);
    const weightedCols = new Float64Array(glyph.length);
    for (let i = 0; i < glyph.length; i++) {
      weightedRows[i] = Math.floor(i / newW) * glyph[i];
      weightedCols[i] = (i % newW) * glyph[i];
    }
    comY = sum64(weightedRows) / total;
    comX = sum64(weightedCols) / total;
  } else {
    comY = (newH - 1) / 2;
    comX = (newW - 1) / 2;
  }
  const top = Math.min(Math.max(roundHalfEven((size - 1) / 2 - comY), 0), size - newH);
  const left = Math.min(Math.max(roundHalfEven((size - 1) / 2 - comX), 0), size - newW);
  const frame = new Uint8Array(size * size); // np.clip(np.round(frame), 0, 255).astype(np.uint8)
  for (let y = 0; y < newH; y++) {
    for (let x = 0; x < newW; x++) {
      frame[(top + y) * size + left + x] = Math.min(Math.max(roundHalfEven(glyph[y * newW + x]), 0), 255);
    }
  }
  return frame;
}
