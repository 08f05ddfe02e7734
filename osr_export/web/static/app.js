// The page: a drawing pad and a file drop, each image through the model's own contract and rule.
import { loadModel } from "./osr.js";

const $ = (id) => document.getElementById(id);
const results = $("results");

/** Draws the contract's uint8 frame (grey or RGB) into a canvas, upscaled by CSS. */
function frameCanvas(pixels, contract) {
  const size = contract.size;
  const canvas = document.createElement("canvas");
  canvas.width = canvas.height = size;
  const rgba = new ImageData(size, size);
  const channels = pixels.length / (size * size);
  for (let i = 0; i < size * size; i++) {
    for (let c = 0; c < 3; c++) rgba.data[i * 4 + c] = pixels[i * channels + (channels === 3 ? c : 0)];
    rgba.data[i * 4 + 3] = 255;
  }
  canvas.getContext("2d").putImageData(rgba, 0, 0);
  canvas.title = `what the network sees: ${size}x${size}`;
  return canvas;
}

function showResult(model, name, bytes, pre, result, error) {
  const card = document.createElement("div");
  card.className = "result" + (result && !result.known ? " unknown" : "");
  const img = document.createElement("img");
  img.src = URL.createObjectURL(new Blob([bytes]));
  img.alt = name;
  card.append(img);
  const text = document.createElement("div");
  if (error) {
    text.innerHTML = `<div class="error">cannot read this image</div>`;
    text.append(Object.assign(document.createElement("div"), { className: "name", textContent: `${name}: ${error.message}` }));
  } else {
    card.append(frameCanvas(pre.pixels, model.contract));
    const rule = `${model.score} ${result.score.toFixed(4)} ${result.known ? "≥" : "<"} ${model.threshold.toFixed(4)}`;
    text.append(Object.assign(document.createElement("div"), { className: "label", textContent: result.label }));
    text.append(Object.assign(document.createElement("div"), { className: "small", textContent: rule }));
    text.append(Object.assign(document.createElement("div"), {
      className: "small", textContent: `top class ${model.classNames[result.top]}, probability ${result.msp.toFixed(4)}`,
    }));
    text.append(Object.assign(document.createElement("div"), { className: "name", textContent: name, title: pre.note || "" }));
    if (!pre.exact) text.append(Object.assign(document.createElement("div"), { className: "small", textContent: "≈ approximate pixels", title: pre.note }));
  }
  card.append(text);
  results.prepend(card);
}

/** Decode and preprocess many files, a few at a time (the browser decodes JPEGs off the main
 * thread, so several in flight overlap); results keep the files' order, errors included. */
async function preprocessAll(model, files, inFlight = 8) {
  const out = new Array(files.length);
  let next = 0;
  async function worker() {
    while (next < files.length) {
      const i = next++;
      try {
        out[i] = await model.preprocess(files[i]);
      } catch (error) {
        out[i] = { error };
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(inFlight, files.length) }, worker));
  return out;
}

/** Preprocess every file's bytes, then run the network once per batch: per file, in order,
 * {pre, result}, or {error} for a file that could not be read. */
async function classifyBytes(model, files) {
  const prepared = await preprocessAll(model, files);
  const decided = await model.classify(prepared.filter((p) => !p.error).map((p) => p.pixels));
  let k = 0;
  return prepared.map((pre) => (pre.error ? { error: pre.error } : { pre, result: decided[k++] }));
}

/** Classify the chosen, dropped or drawn files and show a card per file. */
async function classifyFiles(model, files) {
  const named = await Promise.all(Array.from(files, async (file) => [file.name, new Uint8Array(await file.arrayBuffer())]));
  const classified = await classifyBytes(model, named.map(([, bytes]) => bytes));
  named.forEach(([name, bytes], i) => {
    const { pre, result, error } = classified[i];
    showResult(model, name, bytes, pre ?? null, result ?? null, error ?? null);
  });
}

function setUpPad(model) {
  const pad = $("pad");
  const context = pad.getContext("2d");
  const clear = () => { context.fillStyle = "#fff"; context.fillRect(0, 0, pad.width, pad.height); };
  clear();
  context.lineCap = context.lineJoin = "round";
  context.lineWidth = 18;
  context.strokeStyle = "#111";
  let last = null;
  const at = (e) => { const r = pad.getBoundingClientRect(); return [(e.clientX - r.left) * pad.width / r.width, (e.clientY - r.top) * pad.height / r.height]; };
  pad.addEventListener("pointerdown", (e) => { last = at(e); pad.setPointerCapture(e.pointerId); });
  pad.addEventListener("pointermove", (e) => {
    if (!last) return;
    const next = at(e);
    context.beginPath(); context.moveTo(...last); context.lineTo(...next); context.stroke();
    last = next;
  });
  pad.addEventListener("pointerup", () => { last = null; });
  $("clear").onclick = clear;
  // The drawing goes through the same path as a file: a PNG of dark ink on white paper.
  $("classify-drawing").onclick = () => pad.toBlob((blob) => classifyFiles(model, [new File([blob], "drawing.png")]), "image/png");
}

function setUpFiles(model) {
  const drop = $("drop");
  drop.onclick = () => $("files").click();
  $("files").onchange = (e) => classifyFiles(model, e.target.files);
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => { e.preventDefault(); drop.classList.remove("over"); classifyFiles(model, e.dataTransfer.files); });
  $("speed-button").onclick = async () => {
    $("speed").textContent = "measuring…";
    const frame = new Uint8Array(model.inputShape.reduce((a, b) => a * b, 1));
    const rate = await model.benchmark(frame);
    $("speed").textContent = `${Math.round(rate).toLocaleString("en")} images/s (network only, batch 256, ${model.threads} thread(s))`;
  };
}

/** Bytes as base64, in slices (a spread of a large frame would overflow the call stack). */
function toBase64(bytes) {
  let text = "";
  for (let i = 0; i < bytes.length; i += 8192) text += String.fromCharCode(...bytes.subarray(i, i + 8192));
  return btoa(text);
}

/** For tests and scripts: classify files by URL and return what the page computed, pixels
 * included; window.osr.lastTiming says how long fetching and the rest took (ms). */
async function classifyUrls(model, urls) {
  const t0 = performance.now();
  const files = await Promise.all(urls.map(async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer())));
  const t1 = performance.now();
  const classified = await classifyBytes(model, files);
  window.osr.lastTiming = { fetch: t1 - t0, decode_preprocess_classify: performance.now() - t1, images: urls.length };
  return classified.map(({ pre, result, error }, i) => (error
    ? { url: urls[i], error: error.message }
    : { url: urls[i], exact: pre.exact, note: pre.note, pixels: toBase64(pre.pixels), ...result }));
}

const ready = loadModel("model.onnx").then((model) => {
  const c = model.metadata.preprocessing;
  const steps = (c.steps || []).length ? `, ${c.steps.join(", ")} step` : "";
  $("model").textContent = `model.onnx: ${model.classNames.length} classes (${model.classNames.join(" ")}) or unknown; ` +
    `known when ${model.score} ≥ ${model.threshold.toFixed(4)} (from the model's metadata); input ${c.channels}x${c.size}x${c.size} ${c.color}${steps}; ` +
    `ONNX Runtime Web, wasm, ${model.threads} thread(s)`;
  setUpPad(model);
  setUpFiles(model);
  window.osr.model = model;
  window.osr.classifyUrls = (urls) => classifyUrls(model, urls);
  return model;
}).catch((error) => {
  $("model").textContent = `cannot load the model: ${error.message}`;
  $("model").className = "error";
  throw error;
});
window.osr = { ready };
