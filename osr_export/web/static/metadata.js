// The model's own metadata, read from the ONNX file itself.
//
// onnxruntime-web does not expose an InferenceSession's metadata_props, so this reads them
// from the bytes: ModelProto field 14 is a repeated StringStringEntryProto {key = 1, value = 2}.
// Every other field is skipped by its wire type. The toolkit stores each osr.* value as JSON
// (osr_infer/metadata.py, ModelMetadata.to_props), so values are JSON.parse'd here.

const PREFIX = "osr.";
const decoder = new TextDecoder("utf-8", { fatal: true });

function readVarint(bytes, pos) {
  let value = 0;
  let factor = 1;
  for (let i = 0; i < 10; i++) {
    if (pos >= bytes.length) throw new Error("truncated ONNX file (varint)");
    const b = bytes[pos++];
    value += (b & 0x7f) * factor; // exact up to 2^53: lengths and tags are far below
    if (b < 0x80) return [value, pos];
    factor *= 128;
  }
  throw new Error("malformed ONNX file (varint longer than 10 bytes)");
}

// [[fieldNumber, wireType, start, end]] of one message's top-level fields.
function* fields(bytes, start, end) {
  let pos = start;
  while (pos < end) {
    let key;
    [key, pos] = readVarint(bytes, pos);
    const field = Math.floor(key / 8);
    const wire = key % 8;
    let next;
    if (wire === 0) {
      [, next] = readVarint(bytes, pos);
    } else if (wire === 1) {
      next = pos + 8;
    } else if (wire === 2) {
      let length;
      [length, pos] = readVarint(bytes, pos);
      next = pos + length;
    } else if (wire === 5) {
      next = pos + 4;
    } else {
      throw new Error(`malformed ONNX file (wire type ${wire})`);
    }
    if (next > end) throw new Error("truncated ONNX file");
    yield [field, wire, pos, next];
    pos = next;
  }
}

/** All metadata_props of an ONNX model as {key: string value}. */
export function readMetadataProps(bytes) {
  const props = {};
  for (const [field, wire, start, end] of fields(bytes, 0, bytes.length)) {
    if (field !== 14 || wire !== 2) continue;
    let key = "";
    let value = "";
    for (const [f, w, s, e] of fields(bytes, start, end)) {
      if (w !== 2) continue;
      if (f === 1) key = decoder.decode(bytes.subarray(s, e));
      else if (f === 2) value = decoder.decode(bytes.subarray(s, e));
    }
    props[key] = value;
  }
  return props;
}

/** The osr.* metadata as a plain object, values decoded from JSON; throws if there is none. */
export function readOsrMetadata(bytes) {
  const props = readMetadataProps(bytes);
  const meta = {};
  for (const [key, value] of Object.entries(props)) {
    if (!key.startsWith(PREFIX)) continue;
    try {
      meta[key.slice(PREFIX.length)] = JSON.parse(value);
    } catch (err) {
      throw new Error(`malformed metadata ${key}: ${err.message}`);
    }
  }
  if (!Object.keys(meta).length) throw new Error("the model carries no osr.* metadata: was it exported by osr-export?");
  for (const needed of ["class_names", "preprocessing", "score", "threshold"]) {
    if (!(needed in meta)) throw new Error(`the model's metadata lacks osr.${needed}`);
  }
  if (!Number.isFinite(meta.threshold)) throw new Error("osr.threshold is not a finite number");
  if (!Array.isArray(meta.class_names) || !meta.class_names.length) throw new Error("osr.class_names must be a non-empty list");
  return meta;
}
