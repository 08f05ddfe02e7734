// Image files -> 8-bit RGBA pixels as the Python contract decodes them (osr_infer/preprocess.py,
// load_image: JPEG draft, EXIF orientation, then the contract's conversion in contract.js).
//
// PNG is decoded here (png.js), so its pixels are exactly PIL's, transparency included (a
// canvas would premultiply alpha and lose the colour of half-transparent pixels). JPEG is
// decoded by the browser (Chromium uses libjpeg-turbo, as PIL does: the same pixels), which
// always applies the EXIF orientation, as PIL's exif_transpose does. One thing the browser
// cannot do is PIL's draft mode: big JPEGs are decoded by PIL at 1/2, 1/4 or 1/8 scale in the
// DCT domain. Here they are decoded whole and averaged over the same blocks: close to PIL's
// pixels, not identical, and reported as such (exact: false).

import { exifTranspose } from "./contract.js";
import { decodePng } from "./png.js";

/** The toolkit's limit on decoded pixels (osr_infer/preprocess.py MAX_IMAGE_PIXELS). */
export const MAX_IMAGE_PIXELS = 64_000_000;
/** The layout step's working side (osr_infer/layout.py WORK_SIDE). */
const LAYOUT_WORK_SIDE = 256;

// The orientation that undoes each EXIF orientation (for contracts that do not apply it).
const INVERSE = { 2: 2, 3: 3, 4: 4, 5: 5, 6: 8, 7: 7, 8: 6 };
const transpose = (image, orientation) => exifTranspose(image, orientation);

/** What the JPEG's headers say: stored size, components, EXIF orientation (1 when absent). */
export function jpegInfo(bytes) {
  const info = { width: 0, height: 0, components: 0, orientation: 1 };
  let pos = 2;
  while (pos + 4 <= bytes.length) {
    if (bytes[pos] !== 0xff) throw new Error("not a JPEG file (bad marker)");
    const marker = bytes[pos + 1];
    if (marker === 0xff) { pos += 1; continue; } // fill byte
    if (marker === 0xd8 || marker === 0x01 || (marker >= 0xd0 && marker <= 0xd7)) { pos += 2; continue; }
    if (marker === 0xd9 || marker === 0xda) break; // end of image / start of scan: headers are over
    const length = (bytes[pos + 2] << 8) | bytes[pos + 3];
    const start = pos + 4;
    const end = pos + 2 + length;
    if (length < 2 || end > bytes.length) throw new Error("truncated JPEG file");
    const isSof = marker >= 0xc0 && marker <= 0xcf && marker !== 0xc4 && marker !== 0xc8 && marker !== 0xcc;
    if (isSof && length >= 8) {
      info.height = (bytes[start + 1] << 8) | bytes[start + 2];
      info.width = (bytes[start + 3] << 8) | bytes[start + 4];
      info.components = bytes[start + 5];
    } else if (marker === 0xe1 && length >= 16 && String.fromCharCode(...bytes.subarray(start, start + 4)) === "Exif") {
      info.orientation = exifOrientation(bytes.subarray(start + 6, end)) ?? info.orientation;
    }
    pos = end;
  }
  if (!info.width || !info.height) throw new Error("JPEG file without a frame header");
  return info;
}

/** The orientation tag (0x0112) of a TIFF block (EXIF's IFD0), or null. */
export function exifOrientation(tiff) {
  if (tiff.length < 8) return null;
  const little = tiff[0] === 0x49 && tiff[1] === 0x49;
  if (!little && !(tiff[0] === 0x4d && tiff[1] === 0x4d)) return null;
  const u16 = (p) => (little ? tiff[p] | (tiff[p + 1] << 8) : (tiff[p] << 8) | tiff[p + 1]);
  const u32 = (p) => (little ? u16(p) + u16(p + 2) * 65536 : u16(p) * 65536 + u16(p + 2));
  const ifd = u32(4);
  if (ifd + 2 > tiff.length) return null;
  const count = u16(ifd);
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > tiff.length) return null;
    if (u16(entry) === 0x0112) return u16(entry + 8);
  }
  return null;
}

/** PIL's draft scale for a JPEG of this stored size (JpegImageFile.draft): 8, 4, 2 or 1. */
export function draftScale(width, height, draftSize) {
  const scale = Math.min(Math.floor(width / draftSize), Math.floor(height / draftSize));
  for (const s of [8, 4, 2]) if (scale >= s) return s;
  return 1;
}

// The mean of each s x s block (PIL's draft decodes ceil(W/s) x ceil(H/s) pixels): an
// approximation of libjpeg's DCT-domain scaling, which averages the same blocks.
function blockMean(image, s) {
  const { width: W, height: H, data } = image;
  const w = Math.ceil(W / s);
  const h = Math.ceil(H / s);
  const out = new Uint8ClampedArray(w * h * 4);
  const sums = new Float64Array(w * 4); // one row of blocks at a time
  for (let by = 0; by < h; by++) {
    sums.fill(0);
    const rows = Math.min(H, by * s + s) - by * s;
    for (let y = by * s; y < by * s + rows; y++) {
      let p = y * W * 4;
      for (let x = 0; x < W; x++, p += 4) {
        const b = ((x / s) | 0) * 4;
        sums[b] += data[p];
        sums[b + 1] += data[p + 1];
        sums[b + 2] += data[p + 2];
        sums[b + 3] += data[p + 3];
      }
    }
    for (let bx = 0; bx < w; bx++) {
      const n = rows * (Math.min(W, bx * s + s) - bx * s);
      for (let c = 0; c < 4; c++) out[(by * w + bx) * 4 + c] = Math.round(sums[bx * 4 + c] / n);
    }
  }
  return { ...image, width: w, height: h, data: out };
}

async function browserPixels(bytes, type) {
  const bitmap = await createImageBitmap(new Blob([bytes], { type }), {
    colorSpaceConversion: "none", premultiplyAlpha: "none", imageOrientation: "from-image",
  });
  if (bitmap.width * bitmap.height > MAX_IMAGE_PIXELS) {
    throw new Error(`image too large (${bitmap.width}x${bitmap.height} pixels, limit ${MAX_IMAGE_PIXELS.toLocaleString("en")})`);
  }
  const canvas = new OffscreenCanvas(bitmap.width, bitmap.height);
  const context = canvas.getContext("2d", { willReadFrequently: true });
  context.drawImage(bitmap, 0, 0);
  const { data } = context.getImageData(0, 0, bitmap.width, bitmap.height, { colorSpace: "srgb" });
  bitmap.close();
  return { width: canvas.width, height: canvas.height, data };
}

/** PreprocessContract.draft_size: the smallest side a JPEG may be DCT-scaled down to. */
export function draftSize(preprocessing) {
  const layout = (preprocessing.steps || []).includes("layout");
  return layout ? Math.max(2 * preprocessing.size, LAYOUT_WORK_SIDE) : 2 * preprocessing.size;
}

const startsWith = (bytes, signature) => signature.every((b, i) => bytes[i] === b);

/**
 * Decode an image file as the contract does up to its colour conversion. `preprocessing` is
 * the model's osr.preprocessing dict (its draft and exif fields are read here).
 * Returns {image: {width, height, data (RGBA), mode}, exact, format, note}: `exact` is false
 * where the pixels can differ from PIL's (draft-scaled JPEGs, CMYK JPEGs, other formats).
 */
export async function decodeImage(bytes, preprocessing) {
  if (!bytes.length) throw new Error("empty file (0 bytes)");
  if (startsWith(bytes, [0x89, 0x50, 0x4e, 0x47])) {
    const decoded = await decodePng(bytes, { maxPixels: MAX_IMAGE_PIXELS });
    const image = preprocessing.exif && decoded.orientation ? transpose(decoded, decoded.orientation) : decoded;
    return { image, exact: true, format: "PNG", note: "" };
  }
  if (startsWith(bytes, [0xff, 0xd8, 0xff])) {
    const info = jpegInfo(bytes);
    if (info.width * info.height > MAX_IMAGE_PIXELS) throw new Error(`image too large (${info.width}x${info.height} pixels, limit ${MAX_IMAGE_PIXELS.toLocaleString("en")})`);
    let image = await browserPixels(bytes, "image/jpeg"); // upright: the browser applied EXIF
    image.mode = info.components === 1 ? "L" : "RGB";
    let exact = info.components !== 4;
    let note = exact ? "" : "CMYK JPEG: the browser's colour conversion is not PIL's";
    const scale = preprocessing.draft ? draftScale(info.width, info.height, draftSize(preprocessing)) : 1;
    const turned = INVERSE[info.orientation] ? info.orientation : 1;
    if (scale > 1 || (!preprocessing.exif && turned !== 1)) {
      image = transpose(image, INVERSE[turned]); // back to the stored orientation
      if (scale > 1) {
        image = blockMean(image, scale);
        exact = false;
        note = `JPEG draft 1/${scale} approximated (PIL scales in the DCT domain)`;
      }
      if (preprocessing.exif) image = transpose(image, turned);
    }
    return { image, exact, format: "JPEG", note };
  }
  const image = await browserPixels(bytes, "");
  image.mode = "RGBA";
  return { image, exact: false, format: "other", note: "decoded by the browser: pixels may differ from PIL's" };
}
