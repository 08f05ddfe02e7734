// PNG files -> the pixels Pillow 13 decodes from them (PngImagePlugin.py, ZipDecode.c, Unpack.c),
// as 8-bit RGBA with the PIL mode beside them, for contract.js's toUint8.
//
// What PIL makes of each kind of PNG, and what comes back here:
//   grey 1 bit       mode "1"     0 or 255
//   grey 2, 4 bits   mode "L"     the level scaled to 8 bits (x 0x55, x 0x11)
//   grey 8 bits      mode "L"
//   grey 16 bits     mode "I;16"  rescaled as preprocess.to_grayscale does: round(v / 65535 * 255)
//   RGB 8/16 bits    mode "RGB"   16 bits: the high byte of each sample
//   palette          mode "P"     the palette's colours, alpha from tRNS (255 past its end; colours past
//                                 the palette's end are black), as PIL's convert("RGBA")
//   grey+alpha 8     mode "LA"
//   grey+alpha 16    mode "RGBA"  the high bytes (PIL's LA;16B unpacker)
//   RGBA 8/16 bits   mode "RGBA"  16 bits: the high bytes
// A tRNS colour of a grey or RGB image is not transparency in PIL's pixels: the alpha bytes of
// modes without an alpha band are 255. Gamma and colour profiles are ignored, as PIL ignores them.
// The EXIF orientation PIL's exif_transpose would read comes back as `orientation` (1 when none):
// the eXIf chunk, else an ImageMagick "Raw profile type exif" text, else XMP's tiff:Orientation
// (Image.getexif). The image itself is not turned.
//
// Like PIL with LOAD_TRUNCATED_IMAGES off, a malformed file is an Error: bad signature, chunks
// cut short, bad checksums of the chunks before the image data (PIL checks those only), an
// unknown colour type or bit depth, a bad filter, or image data that ends before the last row.
// Data after the last row (and a missing zlib checksum) is ignored, as PIL ignores it.

const SIGNATURE = [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a];
/** PngImagePlugin._MODES: (bit depth, colour type) -> PIL mode. */
const MODES = {
  "1,0": "1", "2,0": "L", "4,0": "L", "8,0": "L", "16,0": "I;16",
  "8,2": "RGB", "16,2": "RGB",
  "1,3": "P", "2,3": "P", "4,3": "P", "8,3": "P",
  "8,4": "LA", "16,4": "RGBA",
  "8,6": "RGBA", "16,6": "RGBA",
};
const CHANNELS = { 0: 1, 2: 3, 3: 1, 4: 2, 6: 4 };
/** Adam7 passes: [x0, y0, dx, dy]. */
const ADAM7 = [[0, 0, 8, 8], [4, 0, 8, 8], [0, 4, 4, 8], [2, 0, 4, 4], [0, 2, 2, 4], [1, 0, 2, 2], [0, 1, 1, 2]];

const CRC_TABLE = (() => {
  const table = new Int32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c;
  }
  return table;
})();

function crc32(bytes, start, end) {
  let c = -1;
  for (let i = start; i < end; i++) c = CRC_TABLE[(c ^ bytes[i]) & 0xff] ^ (c >>> 8);
  return (c ^ -1) >>> 0;
}

const u32 = (b, p) => ((b[p] << 24) | (b[p + 1] << 16) | (b[p + 2] << 8) | b[p + 3]) >>> 0;
const latin1 = (bytes) => Array.from(bytes, (b) => String.fromCharCode(b)).join("");

/**
 * Decode a PNG file's bytes (Uint8Array) -> {width, height, data (RGBA, width * height * 4,
 * unpremultiplied), mode (PIL's), orientation (EXIF, 1 when none)}. Throws an Error on a
 * malformed file, or one of more than `maxPixels` pixels (preprocess.MAX_IMAGE_PIXELS).
 */
export async function decodePng(bytes, { maxPixels = 64_000_000 } = {}) {
  if (!(bytes instanceof Uint8Array)) bytes = new Uint8Array(bytes);
  if (bytes.length < 8 || SIGNATURE.some((b, i) => bytes[i] !== b)) throw new Error("not a PNG file (bad signature)");
  let header = null;
  let palette = null;
  let transparency = null;
  const idat = [];
  const text = new Map(); // PIL's image.info for text chunks, by keyword
  let exif = null; // info["exif"]: the eXIf chunk (or a tEXt chunk named "exif")
  let xmp = null; // info["xmp"]: an iTXt chunk named XML:com.adobe.xmp, as bytes
  let phase = "header"; // then "data" (in the IDAT chunks), then "after"
  let pos = 8;
  for (;;) {
    const before = phase === "header";
    if (pos + 8 > bytes.length) {
      if (before) throw new Error("truncated PNG file (no image data)");
      break; // PIL reads what follows the image data leniently
    }
    const length = u32(bytes, pos);
    const type = latin1(bytes.subarray(pos + 4, pos + 8));
    if (!/^\w{4}$/.test(type)) {
      if (before) throw new Error(`broken PNG file (chunk ${JSON.stringify(type)})`);
      break;
    }
    const start = pos + 8;
    const end = start + length;
    const checked = before && type !== "IDAT"; // PIL verifies the checksums of the chunks before the image data
    if (end > bytes.length || (checked && end + 4 > bytes.length)) {
      if (before || (phase === "data" && type === "IDAT")) throw new Error(`truncated PNG file (in its ${type} chunk)`);
      break;
    }
    const data = bytes.subarray(start, end);
    if (checked && crc32(bytes, pos + 4, end) !== u32(bytes, end)) {
      throw new Error(`broken PNG file (bad header checksum in ${type})`);
    }
    pos = end + 4;
    if (type === "IDAT") {
      if (!header) throw new Error("PNG image data before its IHDR chunk");
      if (phase === "after") continue; // PIL reads only the first run of IDAT chunks
      phase = "data";
      idat.push(data);
      continue;
    }
    if (phase === "data") phase = "after";
    if (type === "IEND") break;
    if (type === "IHDR") {
      if (length < 13) throw new Error("truncated IHDR chunk");
      header = {
        width: u32(data, 0), height: u32(data, 4), bitDepth: data[8], colorType: data[9],
        filter: data[11], interlaced: data[12] !== 0,
      };
      if (header.filter) throw new Error("unknown filter category");
    } else if (type === "PLTE") {
      palette = data;
    } else if (type === "tRNS") {
      transparency = data;
    } else if (type === "eXIf") {
      exif = data;
    } else if (type === "tEXt") {
      const zero = data.indexOf(0);
      const key = latin1(zero < 0 ? data : data.subarray(0, zero));
      const value = zero < 0 ? new Uint8Array(0) : data.subarray(zero + 1);
      if (key === "exif") exif = value;
      else if (key) text.set(key, latin1(value));
    } else if (type === "zTXt") {
      const zero = data.indexOf(0);
      const key = latin1(zero < 0 ? data : data.subarray(0, zero));
      const value = zero < 0 ? new Uint8Array(0) : data.subarray(zero + 1);
      if (value.length && value[0] !== 0) throw new Error(`Unknown compression method ${value[0]} in zTXt chunk`);
      if (key) text.set(key, latin1(await inflateAll(value.subarray(1), new Uint8Array(0)))); // broken: empty text
    } else if (type === "iTXt") {
      const entry = await internationalText(data);
      if (entry) {
        if (entry.key === "XML:com.adobe.xmp") xmp = entry.value;
        if (entry.text !== null) text.set(entry.key, entry.text);
      }
    }
  }
  if (!header) throw new Error("PNG file without an IHDR chunk");
  if (!idat.length) throw new Error("PNG file without image data");
  const { width, height, bitDepth, colorType, interlaced } = header;
  const mode = MODES[`${bitDepth},${colorType}`];
  if (!mode) throw new Error(`unknown PNG mode (bit depth ${bitDepth}, colour type ${colorType})`);
  if (width < 1 || height < 1) throw new Error(`degenerate image size ${width}x${height}`);
  if (width * height > maxPixels) {
    throw new Error(`image too large (${width}x${height} pixels, limit ${maxPixels.toLocaleString("en")})`);
  }
  if (colorType === 3 && !palette) throw new Error("palette image without a PLTE chunk");

  const bitsPerPixel = CHANNELS[colorType] * bitDepth;
  const passes = interlaced
    ? ADAM7.map(([x0, y0, dx, dy]) => ({ x0, y0, dx, dy, w: Math.ceil((width - x0) / dx), h: Math.ceil((height - y0) / dy) }))
    : [{ x0: 0, y0: 0, dx: 1, dy: 1, w: width, h: height }];
  let needed = 0;
  for (const p of passes) if (p.w > 0 && p.h > 0) needed += p.h * (1 + Math.ceil((p.w * bitsPerPixel) / 8));
  const raw = await inflate(concat(idat), needed);

  const out = new Uint8Array(width * height * 4);
  const pixel = pixelReader(colorType, bitDepth, paletteRGBA(palette, transparency, colorType));
  let offset = 0;
  for (const p of passes) {
    if (p.w <= 0 || p.h <= 0) continue;
    const rowBytes = Math.ceil((p.w * bitsPerPixel) / 8);
    unfilter(raw, offset, rowBytes, p.h, Math.max(1, bitsPerPixel >> 3));
    for (let y = 0; y < p.h; y++) {
      const row = offset + y * (rowBytes + 1) + 1;
      const outRow = (p.y0 + y * p.dy) * width;
      for (let x = 0; x < p.w; x++) pixel(raw, row, x, out, (outRow + p.x0 + x * p.dx) * 4);
    }
    offset += p.h * (rowBytes + 1);
  }
  return { width, height, data: out, mode, orientation: orientation(exif, text, xmp) };
}

function concat(parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

/** The first `needed` bytes of a zlib stream (ZipDecode.c stops there: nothing after them is read). */
async function inflate(data, needed) {
  const out = new Uint8Array(needed);
  let filled = 0;
  const reader = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate")).getReader();
  try {
    while (filled < needed) {
      const { done, value } = await reader.read();
      if (done) break;
      const take = Math.min(value.length, needed - filled);
      out.set(value.subarray(0, take), filled);
      filled += take;
    }
  } catch (error) {
    if (filled < needed) throw new Error(`broken PNG image data (${error.message})`);
  } finally {
    reader.cancel().catch(() => {});
  }
  if (filled < needed) throw new Error("image file is truncated (the PNG image data ends early)");
  return out;
}

/** A whole zlib stream (a text chunk's), or `broken` when it does not inflate. */
async function inflateAll(data, broken) {
  try {
    const inflated = new Blob([data]).stream().pipeThrough(new DecompressionStream("deflate"));
    return new Uint8Array(await new Response(inflated).arrayBuffer());
  } catch {
    return broken;
  }
}

/** PngStream.chunk_iTXt: {key, value (bytes), text (null when not UTF-8)}, or null when PIL skips it. */
async function internationalText(data) {
  const zero = data.indexOf(0);
  if (zero < 0 || data.length - zero - 1 < 2) return null;
  const key = latin1(data.subarray(0, zero));
  const [compressed, method] = [data[zero + 1], data[zero + 2]];
  let rest = data.subarray(zero + 3);
  for (let field = 0; field < 2; field++) { // language tag, translated keyword
    const end = rest.indexOf(0);
    if (end < 0) return null;
    rest = rest.subarray(end + 1);
  }
  let value = rest;
  if (compressed) {
    if (method !== 0) return null;
    value = await inflateAll(value, null);
    if (value === null) return null; // broken: PIL skips the chunk
  }
  let text = null;
  try {
    text = new TextDecoder("utf-8", { fatal: true }).decode(value);
  } catch {
    text = null;
  }
  return { key, value, text };
}

/** Undo the PNG filters (None, Sub, Up, Average, Paeth) of `rows` scanlines in place. */
function unfilter(raw, offset, rowBytes, rows, bpp) {
  for (let y = 0; y < rows; y++) {
    const row = offset + y * (rowBytes + 1);
    const filter = raw[row];
    const cur = row + 1;
    const prev = y > 0 ? cur - (rowBytes + 1) : -1; // the first row's previous row is zeros
    const up = (i) => (prev >= 0 ? raw[prev + i] : 0);
    switch (filter) {
      case 0:
        break;
      case 1:
        for (let i = bpp; i < rowBytes; i++) raw[cur + i] = (raw[cur + i] + raw[cur + i - bpp]) & 0xff;
        break;
      case 2:
        if (prev >= 0) for (let i = 0; i < rowBytes; i++) raw[cur + i] = (raw[cur + i] + raw[prev + i]) & 0xff;
        break;
      case 3:
        for (let i = 0; i < rowBytes; i++) {
          const left = i >= bpp ? raw[cur + i - bpp] : 0;
          raw[cur + i] = (raw[cur + i] + ((left + up(i)) >> 1)) & 0xff;
        }
        break;
      case 4:
        for (let i = 0; i < rowBytes; i++) {
          const a = i >= bpp ? raw[cur + i - bpp] : 0;
          const b = up(i);
          const c = i >= bpp ? up(i - bpp) : 0;
          const p = a + b - c;
          const pa = Math.abs(p - a);
          const pb = Math.abs(p - b);
          const pc = Math.abs(p - c);
          raw[cur + i] = (raw[cur + i] + (pa <= pb && pa <= pc ? a : pb <= pc ? b : c)) & 0xff;
        }
        break;
      default:
        throw new Error(`broken PNG image data (unknown filter type ${filter})`);
    }
  }
}

/** The palette as PIL's convert("RGBA") sees it: 256 entries, black and opaque past PLTE, alpha from tRNS. */
function paletteRGBA(palette, transparency, colorType) {
  if (colorType !== 3) return null;
  const entries = new Uint8Array(256 * 4);
  for (let i = 0; i < 256; i++) entries[i * 4 + 3] = 255;
  const count = Math.min(256, Math.floor(palette.length / 3));
  for (let i = 0; i < count; i++) entries.set(palette.subarray(i * 3, i * 3 + 3), i * 4);
  if (transparency) {
    if (transparency.length > 256) throw new Error("broken PNG file (tRNS longer than the palette can be)");
    for (let i = 0; i < transparency.length; i++) entries[i * 4 + 3] = transparency[i];
  }
  return entries;
}

/** A function writing pixel x of a scanline (starting at raw[row]) as RGBA into out[at..at+3], by Unpack.c's rules. */
function pixelReader(colorType, bitDepth, palette) {
  const small = (raw, row, x) => { // a 1, 2 or 4-bit sample, most significant bits first
    const bit = x * bitDepth;
    return (raw[row + (bit >> 3)] >> (8 - bitDepth - (bit & 7))) & ((1 << bitDepth) - 1);
  };
  const grey = (out, at, v) => {
    out[at] = out[at + 1] = out[at + 2] = v;
    out[at + 3] = 255;
  };
  const wide = bitDepth === 16 ? 2 : 1; // 16 bits: the high byte
  switch (colorType) {
    case 0:
      if (bitDepth === 16) { // I;16 through to_grayscale: np.round(v / 65535 * 255) (never a tie)
        return (raw, row, x, out, at) => {
          const v = (raw[row + 2 * x] << 8) | raw[row + 2 * x + 1];
          grey(out, at, Math.round((v / 65535) * 255));
        };
      }
      if (bitDepth === 8) return (raw, row, x, out, at) => grey(out, at, raw[row + x]);
      return (raw, row, x, out, at) => { // unpack1 (0 or 255), unpackL2 (x 0x55), unpackL4 (x 0x11)
        const v = small(raw, row, x);
        grey(out, at, bitDepth === 1 ? (v ? 255 : 0) : bitDepth === 2 ? v * 0x55 : v * 0x11);
      };
    case 2:
      return (raw, row, x, out, at) => {
        const p = row + x * 3 * wide;
        out[at] = raw[p];
        out[at + 1] = raw[p + wide];
        out[at + 2] = raw[p + 2 * wide];
        out[at + 3] = 255;
      };
    case 3:
      return (raw, row, x, out, at) => {
        const i = bitDepth === 8 ? raw[row + x] : small(raw, row, x);
        out.set(palette.subarray(i * 4, i * 4 + 4), at);
      };
    case 4:
      return (raw, row, x, out, at) => {
        const p = row + x * 2 * wide;
        out[at] = out[at + 1] = out[at + 2] = raw[p];
        out[at + 3] = raw[p + wide];
      };
    case 6:
      return (raw, row, x, out, at) => {
        const p = row + x * 4 * wide;
        out[at] = raw[p];
        out[at + 1] = raw[p + wide];
        out[at + 2] = raw[p + 2 * wide];
        out[at + 3] = raw[p + 3 * wide];
      };
    default:
      throw new Error(`unknown PNG colour type ${colorType}`);
  }
}

/**
 * Image.getexif's orientation for a PNG: EXIF's tag 0x0112 (eXIf, or the hex of a "Raw profile
 * type exif" text), else the first tiff:Orientation of the XMP packet; 1 when none.
 */
function orientation(exif, text, xmp) {
  let data = exif;
  if (!data && text.has("Raw profile type exif")) {
    const hex = text.get("Raw profile type exif").split("\n").slice(3).join("").replace(/\s+/g, "");
    // Not hex: PIL's getexif raises (load_image fails only with the contract's exif step); here, no EXIF.
    if (hex.length % 2 === 0 && !/[^0-9a-fA-F]/.test(hex)) {
      data = Uint8Array.from(hex.match(/../g) ?? [], (h) => parseInt(h, 16));
    }
  }
  const tag = data ? tiffOrientation(data) : undefined;
  if (tag !== undefined) return tag ?? 1; // a tag that is no single number: PIL turns nothing
  const packet = text.has("XML:com.adobe.xmp") ? text.get("XML:com.adobe.xmp") : xmp ? latin1(xmp) : null;
  const match = packet && /tiff:Orientation(="|>)([0-9])/.exec(packet);
  return match ? Number(match[2]) : 1;
}

/**
 * The orientation tag of EXIF data (Image.Exif.load: "Exif\0\0" prefixes stripped, then the
 * TIFF header and IFD0): undefined when absent, null when present but no single number.
 */
function tiffOrientation(data) {
  let start = 0;
  for (let k = 0; k < 2 && latin1(data.subarray(start, start + 6)) === "Exif\0\0"; k++) start += 6;
  const tiff = data.subarray(start);
  if (tiff.length < 8) return undefined;
  const order = latin1(tiff.subarray(0, 2));
  if (order !== "II" && order !== "MM") return undefined;
  const view = new DataView(tiff.buffer, tiff.byteOffset, tiff.byteLength);
  const little = order === "II";
  const ifd = view.getUint32(4, little);
  if (ifd + 2 > tiff.length) return undefined;
  const count = view.getUint16(ifd, little);
  // TIFF types that PIL reads as numbers: [size, reader].
  const types = {
    1: [1, (p) => view.getUint8(p)], 3: [2, (p) => view.getUint16(p, little)], 4: [4, (p) => view.getUint32(p, little)],
    6: [1, (p) => view.getInt8(p)], 8: [2, (p) => view.getInt16(p, little)], 9: [4, (p) => view.getInt32(p, little)],
    11: [4, (p) => view.getFloat32(p, little)], 12: [8, (p) => view.getFloat64(p, little)],
  };
  let found;
  for (let i = 0; i < count; i++) {
    const entry = ifd + 2 + i * 12;
    if (entry + 12 > tiff.length) break;
    if (view.getUint16(entry, little) !== 0x0112) continue;
    const type = types[view.getUint16(entry + 2, little)];
    const n = view.getUint32(entry + 4, little);
    if (!type) {
      found = null; // another type: PIL keeps it, and it is no orientation
      continue;
    }
    const size = type[0] * n;
    const at = size > 4 ? view.getUint32(entry + 8, little) : entry + 8;
    if (at + size > tiff.length) continue; // "possibly corrupt EXIF data": PIL skips the tag
    found = n === 1 ? type[1](at) : null;
  }
  return found;
}
