// The exported model in the browser: its metadata, its preprocessing contract and its decision,
// all read from model.onnx itself (nothing of the model is hard-coded in the page).

import * as ort from "./ort/ort.wasm.min.mjs";
import { parseContract, normalize, toUint8 } from "./contract.js";
import { decodeImage } from "./decode.js";
import { readOsrMetadata } from "./metadata.js";

/** Decoded images above this many per inference call are run in several calls. */
export const BATCH_SIZE = 256;

/** Load model.onnx (or another URL): metadata, contract and an ONNX Runtime Web session (wasm). */
export async function loadModel(url = "model.onnx") {
  // Runtime files beside this script (copied from the pinned npm package by osr-export --format web).
  ort.env.wasm.wasmPaths = new URL("./ort/", import.meta.url).href;
  // Threads need a cross-origin-isolated page (COOP/COEP headers); a plain static server gives one.
  ort.env.wasm.numThreads = globalThis.crossOriginIsolated ? Math.min(4, navigator.hardwareConcurrency || 1) : 1;
  const response = await fetch(url);
  if (!response.ok) throw new Error(`cannot fetch ${url}: HTTP ${response.status}`);
  const bytes = new Uint8Array(await response.arrayBuffer());
  const metadata = readOsrMetadata(bytes);
  const contract = parseContract(metadata.preprocessing);
  const session = await ort.InferenceSession.create(bytes, { executionProviders: ["wasm"], graphOptimizationLevel: "all" });
  return new Model(session, metadata, contract, url);
}

export class Model {
  constructor(session, metadata, contract, url) {
    this.session = session;
    this.metadata = metadata;
    this.contract = contract;
    this.url = url;
    this.classNames = metadata.class_names;
    this.score = metadata.score;
    this.threshold = metadata.threshold;
    this.temperature = metadata.temperature ?? 1;
    this.inputName = session.inputNames[0];
    const [channels, size] = [metadata.preprocessing.channels, metadata.preprocessing.size];
    this.inputShape = [channels, size, size];
    this.threads = ort.env.wasm.numThreads;
  }

  /** An image file's bytes -> {pixels (uint8, the contract's frame), exact, note, format}. */
  async preprocess(bytes) {
    const decoded = await decodeImage(bytes, this.metadata.preprocessing);
    const pixels = toUint8(decoded.image, this.contract);
    return { pixels, exact: decoded.exact, note: decoded.note, format: decoded.format };
  }

  /** Run the network on uint8 frames; returns one result per frame (label, score, decision). */
  async classify(frames) {
    const results = [];
    const per = this.inputShape.reduce((a, b) => a * b, 1);
    for (let start = 0; start < frames.length; start += BATCH_SIZE) {
      const batch = frames.slice(start, start + BATCH_SIZE);
      const input = new Float32Array(batch.length * per);
      batch.forEach((pixels, i) => input.set(normalize(pixels, this.contract), i * per));
      const outputs = await this.session.run({ [this.inputName]: new ort.Tensor("float32", input, [batch.length, ...this.inputShape]) });
      const k = this.classNames.length;
      for (let i = 0; i < batch.length; i++) {
        const logits = Array.from(outputs.logits.data.subarray(i * k, (i + 1) * k));
        const probs = Array.from(outputs.probs.data.subarray(i * k, (i + 1) * k));
        const score = outputs.score.data[i];
        results.push(this.decide(logits, probs, score));
      }
    }
    return results;
  }

  /** The toolkit's rule (osr-infer without --threshold): known when score >= threshold, named by the top class. */
  decide(logits, probs, score) {
    let top = 0;
    for (let c = 1; c < probs.length; c++) if (probs[c] > probs[top]) top = c;
    const known = score >= this.threshold;
    return { logits, probs, score, top, msp: probs[top], known, label: known ? this.classNames[top] : "unknown" };
  }

  /** Images per second of the network alone on `n` copies of a frame, in batches of BATCH_SIZE. */
  async benchmark(frame, n = 4096) {
    const frames = Array.from({ length: Math.min(n, BATCH_SIZE) }, () => frame);
    await this.classify(frames); // warm-up
    const t0 = performance.now();
    let done = 0;
    while (done < n) {
      await this.classify(frames);
      done += frames.length;
    }
    return (done / (performance.now() - t0)) * 1000;
  }
}
