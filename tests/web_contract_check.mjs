// The JavaScript side of tests/test_web_contract.py: runs the page's contract.js and png.js on
// the inputs the test wrote, and writes what they give back for the test to compare with Python.
//
//   node tests/web_contract_check.mjs DIR
//
// DIR/manifest.json: {
//   "contracts": {name: preprocessing dict},
//   "images": [{"file", "width", "height", "mode", "contracts": [name...]}],   raw RGBA files
//   "pngs": [{"file"}],                                                         PNG files to decode
//   "parse": [preprocessing dict...],                                           parseContract alone
//   "primitives": [{"file", "w", "h", "c", "op": "resize"|"boxBlur"|"rankFilter3", "args"}]
// }
// Writes DIR/out.bin (the bytes, back to back) and DIR/results.json: per image and contract
// {pixels: [offset, length], input: [offset, length]} (uint8 pixels, float32 normalize()) or
// {error}; per PNG {width, height, mode, orientation, data, upright (exifTranspose), upright_shape}
// or {error}; per
// parse case {contract} or {error}; per primitive [offset, length] or {error}; and the
// milliseconds toUint8 took, per contract.

import { readFile, writeFile } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const web = path.join(path.dirname(fileURLToPath(import.meta.url)), "..", "osr_export", "web", "static");
const contractJs = await import(pathToFileURL(path.join(web, "contract.js")).href);
const { parseContract, toUint8, normalize, exifTranspose, internals } = contractJs;
const { decodePng } = await import(pathToFileURL(path.join(web, "png.js")).href);

const dir = process.argv[2];
const manifest = JSON.parse(await readFile(path.join(dir, "manifest.json"), "utf8"));
const chunks = [];
let offset = 0;
/** Appends a typed array's bytes to out.bin; returns [offset, length in bytes]. */
function store(array) {
  const bytes = new Uint8Array(array.buffer, array.byteOffset, array.byteLength);
  chunks.push(Buffer.from(bytes));
  offset += bytes.length;
  return [offset - bytes.length, bytes.length];
}
const message = (error) => String(error && error.message ? error.message : error);

const contracts = {};
for (const [name, dict] of Object.entries(manifest.contracts ?? {})) contracts[name] = parseContract(dict);
const timing = {};
const images = [];
for (const item of manifest.images ?? []) {
  const data = new Uint8Array(await readFile(path.join(dir, item.file)));
  const image = { width: item.width, height: item.height, data, mode: item.mode };
  const outputs = {};
  for (const name of item.contracts) {
    try {
      const start = performance.now();
      const pixels = toUint8(image, contracts[name]);
      const took = performance.now() - start;
      timing[name] ??= { images: 0, ms: 0, max_ms: 0 };
      timing[name].images += 1;
      timing[name].ms += took;
      timing[name].max_ms = Math.max(timing[name].max_ms, took);
      outputs[name] = { pixels: store(pixels), input: store(normalize(pixels, contracts[name])) };
    } catch (error) {
      outputs[name] = { error: message(error) };
    }
  }
  images.push(outputs);
}
const pngs = [];
for (const item of manifest.pngs ?? []) {
  try {
    const decoded = await decodePng(new Uint8Array(await readFile(path.join(dir, item.file))));
    const { width, height, mode, orientation } = decoded;
    const upright = exifTranspose(decoded);
    pngs.push({
      width, height, mode, orientation, data: store(decoded.data),
      upright: store(upright.data), upright_shape: [upright.height, upright.width],
    });
  } catch (error) {
    pngs.push({ error: message(error) });
  }
}
const parse = (manifest.parse ?? []).map((dict) => {
  try {
    return { contract: parseContract(dict) };
  } catch (error) {
    return { error: message(error) };
  }
});
const primitives = [];
for (const item of manifest.primitives ?? []) {
  try {
    const im = { w: item.w, h: item.h, c: item.c, data: new Uint8Array(await readFile(path.join(dir, item.file))) };
    primitives.push(store(internals[item.op](im, ...item.args).data));
  } catch (error) {
    primitives.push({ error: message(error) });
  }
}
await writeFile(path.join(dir, "out.bin"), Buffer.concat(chunks));
await writeFile(path.join(dir, "results.json"), JSON.stringify({ images, pngs, parse, primitives, timing }));
