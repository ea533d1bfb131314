// The page of a web export (src/shipyard/edge/web.py). The model runs here, in the browser, on
// onnxruntime-web's WebAssembly backend (one thread: no cross-origin isolation needed), with the server's
// processing around it: a picture becomes the graph's uint8 pixels as the recipe in model.json says
// (shipyard-pixels.js does what Pillow does on the server), and the outputs are read as the server's
// /predict reads them (softmax or sigmoid as declared, labels, top-k). Only this folder's files are read.
//
// window.shipyardRun(feeds) runs the graph: feeds {name: {data: [...], dims: [...], type: "uint8" | ...}},
// answered {name: {data: [...], dims: [...], type}}. window.shipyard says how the page is doing: ready,
// error, loadMs (from opening the page to the model ready), version (onnxruntime-web's), busy (an answer
// is on its way), last (the latest answer, with the pixels it was given).
import { decode, pixels } from "./shipyard-pixels.js";

const state = { ready: false, error: null, loadMs: null, version: null, busy: false, last: null };
window.shipyard = state;

const ARRAYS = {
  uint8: Uint8Array, int8: Int8Array, uint16: Uint16Array, int16: Int16Array, uint32: Uint32Array,
  int32: Int32Array, int64: BigInt64Array, uint64: BigUint64Array, float32: Float32Array,
  float64: Float64Array, bool: Uint8Array, float16: globalThis.Float16Array,
};
const TYPES = {
  UINT8: "uint8", INT8: "int8", UINT16: "uint16", INT16: "int16", UINT32: "uint32", INT32: "int32",
  INT64: "int64", UINT64: "uint64", FP16: "float16", FP32: "float32", FP64: "float64", BOOL: "bool",
  BYTES: "string",
};
const $ = (id) => document.getElementById(id);
let ort, session, model;

function tensor({ data, dims, type }) {
  if (type === "string") return new ort.Tensor("string", Array.from(data, String), dims);
  const Array_ = ARRAYS[type];
  if (!Array_) throw new Error(`onnxruntime-web takes no ${type} tensors here`);
  if (data instanceof Array_) return new ort.Tensor(type, data, dims);
  const wide = type === "int64" || type === "uint64";
  const values = Array.from(data, (v) => (wide ? BigInt(v) : type === "bool" ? Number(Boolean(v)) : v));
  return new ort.Tensor(type, Array_.from(values), dims);
}

function plain(t) {
  const wide = t.type === "int64" || t.type === "uint64";
  const data = Array.from(t.data, (v) => (wide ? Number(v) : t.type === "bool" ? Boolean(v) : v));
  return { data, dims: Array.from(t.dims), type: t.type };
}

async function run(feeds) {
  const fed = {};
  for (const [name, feed] of Object.entries(feeds)) fed[name] = tensor(feed);
  const results = await session.run(fed);
  const out = {};
  for (const spec of model.outputs) out[spec.name] = plain(results[spec.name]);
  return out;
}
window.shipyardRun = run;

// -- reading the answer, as protocol/predict.py and scoring.py do -----------------------------------

const label = (i) => (model.labels && i < model.labels.length ? model.labels[i] : String(i));
const round6 = (x) => Math.round(x * 1e6) / 1e6;
const percent = (p) => `${(p * 100).toFixed(p > 0.999 && p < 1 ? 2 : 1)}%`; // 99.97%, not 100.0%
const sigmoid = (x) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

function softmax(row) {
  const top = Math.max(...row);
  const e = row.map((x) => Math.exp(x - top));
  const sum = e.reduce((a, b) => a + b, 0);
  return e.map((x) => x / sum);
}

/** The answer to the first sample, as /predict gives it, and its class probabilities (or null). */
function answer(outputs) {
  const scores = model.scores;
  if (!scores) {
    const out = outputs[model.outputs[0].name];
    const size = out.dims.slice(1).reduce((a, b) => a * b, 1);
    const row = out.data.slice(0, size);
    if (model.unit) return { item: { prediction: row.length === 1 ? row[0] : row, unit: model.unit } };
    return { item: { prediction: out.dims.length === 1 ? row[0] : row }, probabilities: null };
  }
  const out = outputs[scores.output];
  const classes = out.dims[out.dims.length - 1];
  const row = out.data.slice(0, classes);
  const probabilities =
    scores.kind === "logits" ? softmax(row) : scores.kind === "sigmoid" ? row.map(sigmoid) : row;
  let best = 0;
  probabilities.forEach((p, i) => { if (p > probabilities[best]) best = i; });
  const item = { class: label(best), confidence: round6(probabilities[best]) };
  const ranked = probabilities.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0] || a[1] - b[1]);
  const entry = ([p, i]) => ({ class: label(i), confidence: round6(p) });
  if (scores.threshold !== null && scores.threshold !== undefined) {
    item.classes = ranked.filter(([p]) => p >= scores.threshold).map(entry);
  }
  if (scores.top_k) item.top_k = ranked.slice(0, scores.top_k).map(entry);
  return { item, probabilities: ranked.slice(0, Math.max(scores.top_k || 0, Math.min(5, classes))) };
}

function show(outputs, fed) {
  const { item, probabilities } = answer(outputs);
  state.last = { answer: item, pixels: fed ? Array.from(fed.data) : null, dims: fed ? fed.dims : null };
  $("class").textContent = "class" in item ? item.class : JSON.stringify(item.prediction);
  $("confidence").textContent =
    "confidence" in item ? `confidence ${percent(item.confidence)}` : item.unit || "";
  const list = $("top");
  list.replaceChildren();
  for (const [p, i] of probabilities || []) {
    const row = document.createElement("li");
    row.innerHTML = `<span class=name></span><span class=bar><span></span></span><span class=value></span>`;
    row.querySelector(".name").textContent = label(i);
    row.querySelector(".bar span").style.width = `${(p * 100).toFixed(1)}%`;
    row.querySelector(".value").textContent = percent(p);
    list.append(row);
  }
  $("json").textContent = JSON.stringify(item);
}

let queue = Promise.resolve();
let queued = 0;

/** Run `job` after the ones before it (one answer at a time, in order); state.busy until all are done. */
function serially(job) {
  queued += 1;
  state.busy = true;
  queue = queue
    .then(job)
    .catch(oops)
    .finally(() => {
      queued -= 1;
      state.busy = queued > 0;
    });
  return queue;
}

/** A prediction that failed (a value that is no number, a picture the browser cannot read): said where
 * the answer goes. */
function oops(error) {
  const message = String((error && error.message) || error);
  state.last = { error: message };
  $("class").textContent = "–";
  $("confidence").textContent = "";
  $("top").replaceChildren();
  $("json").textContent = `error: ${message}`;
}

/** The page cannot run the model at all. */
function fail(error) {
  state.error = String((error && error.message) || error);
  $("status").textContent = `error: ${state.error}`;
  document.body.classList.add("failed");
}

// -- pictures: drawn on the pad, picked or dropped -----------------------------------------------------

async function predictPicture(image) {
  const fed = pixels(image, model.image);
  showSeen(fed);
  const outputs = await run({ [model.image.input]: { data: fed.data, dims: fed.dims, type: "uint8" } });
  show(outputs, fed);
}

/** What the model sees (the recipe's pixels, before the graph's scaling), drawn large. */
function showSeen({ data, dims }) {
  const [, height, width, depth] = dims;
  const canvas = $("seen");
  canvas.width = width;
  canvas.height = height;
  const image = new ImageData(width, height);
  for (let i = 0; i < width * height; i++) {
    for (let c = 0; c < 3; c++) image.data[4 * i + c] = data[i * depth + (depth === 1 ? 0 : c)];
    image.data[4 * i + 3] = 255;
  }
  canvas.getContext("2d").putImageData(image, 0, 0);
}

function setUpPad() {
  const pad = $("pad");
  const context = pad.getContext("2d", { willReadFrequently: true });
  const clear = () => {
    context.fillStyle = "#fff";
    context.fillRect(0, 0, pad.width, pad.height);
  };
  clear();
  // ink as examples/digits/build.py draws its 7: 7 pixels wide on 64
  Object.assign(context, { lineWidth: (pad.width * 7) / 64, lineCap: "round", lineJoin: "round" });
  context.strokeStyle = "#000";
  let last = null;
  let frame = null;
  let waiting = false; // a pad answer is queued, and will read the pad as it is when it starts
  const point = (event) => {
    const box = pad.getBoundingClientRect();
    const x = ((event.clientX - box.left) * pad.width) / box.width;
    return [x, ((event.clientY - box.top) * pad.height) / box.height];
  };
  const predictPad = () => {
    if (waiting) return;
    waiting = true;
    serially(() => {
      waiting = false;
      return predictPicture(context.getImageData(0, 0, pad.width, pad.height));
    });
  };
  const stroke = (to) => {
    context.beginPath();
    context.moveTo(...last);
    context.lineTo(...to);
    context.stroke();
    last = to;
    if (frame === null) { // at most one answer a frame while drawing
      frame = requestAnimationFrame(() => { frame = null; predictPad(); });
    }
  };
  pad.addEventListener("pointerdown", (event) => {
    pad.setPointerCapture(event.pointerId);
    last = point(event);
    stroke(last);
  });
  pad.addEventListener("pointermove", (event) => { if (last) stroke(point(event)); });
  const end = () => {
    if (!last) return;
    last = null;
    if (frame !== null) cancelAnimationFrame(frame);
    frame = null;
    predictPad();
  };
  pad.addEventListener("pointerup", end);
  pad.addEventListener("pointercancel", end);
  $("clear").addEventListener("click", clear);

  const open = async (file) => {
    const image = await decode(file);
    clear(); // the picture, fitted to the pad; the model gets the whole picture
    const fit = Math.min(pad.width / image.width, pad.height / image.height);
    const bitmap = await createImageBitmap(image);
    const [w, h] = [image.width * fit, image.height * fit];
    context.drawImage(bitmap, (pad.width - w) / 2, (pad.height - h) / 2, w, h);
    await predictPicture(image);
  };
  $("file").addEventListener("change", (event) => {
    if (event.target.files.length) serially(() => open(event.target.files[0]));
  });
  pad.addEventListener("dragover", (event) => event.preventDefault());
  pad.addEventListener("drop", (event) => {
    event.preventDefault();
    if (event.dataTransfer.files.length) serially(() => open(event.dataTransfer.files[0]));
  });
  $("picture").hidden = false;
}

// -- values: one field per named feature, or a JSON sample per input -----------------------------------

function setUpValues() {
  const fields = $("fields");
  const inputs = model.inputs;
  if (model.features && inputs.length === 1) {
    for (const name of model.features) fields.append(field(name, "number", "0"));
  } else {
    for (const spec of inputs) {
      const example = JSON.stringify(zeros(spec.shape.slice(1), spec.datatype));
      fields.append(field(spec.name, "json", example, `${spec.datatype} [${spec.shape.join(", ")}]`));
    }
  }
  $("values").addEventListener("submit", (event) => {
    event.preventDefault();
    const feeds = {};
    try {
      if (model.features && inputs.length === 1) {
        const value = (name) => Number(fields.querySelector(`[name="${CSS.escape(name)}"]`).value);
        const values = model.features.map(value);
        feeds[inputs[0].name] = { data: values, dims: [1, values.length], type: TYPES[inputs[0].datatype] };
      } else {
        for (const spec of inputs) {
          const sample = JSON.parse(fields.querySelector(`[name="${CSS.escape(spec.name)}"]`).value);
          const { data, dims } = flatten(sample);
          const batched = spec.shape[0] === -1 ? [1, ...dims] : dims;
          feeds[spec.name] = { data, dims: batched, type: TYPES[spec.datatype] };
        }
      }
    } catch (error) {
      oops(error);
      return;
    }
    serially(async () => show(await run(feeds), null));
  });
  $("values").hidden = false;
}

function field(name, kind, value, note = "") {
  const row = document.createElement("label");
  const entry = kind === "json" ? "<textarea rows=3></textarea>" : "<input type=number step=any>";
  row.innerHTML = `<span></span>${entry}`;
  row.querySelector("span").textContent = note ? `${name} ${note}` : name;
  const input = row.querySelector(kind === "json" ? "textarea" : "input");
  input.name = name;
  input.value = value;
  return row;
}

function zeros(shape, datatype) {
  if (!shape.length) return datatype === "BYTES" ? "" : 0;
  return Array.from({ length: Math.max(shape[0], 1) }, () => zeros(shape.slice(1), datatype));
}

function flatten(sample) {
  if (!Array.isArray(sample)) return { data: [sample], dims: [] };
  const parts = sample.map(flatten);
  return { data: parts.flatMap((p) => p.data), dims: [sample.length, ...(parts[0] ? parts[0].dims : [])] };
}

// -- start ------------------------------------------------------------------------------------------

async function main() {
  model = await (await fetch("model.json")).json();
  document.title = `${model.model}:${model.version} in the browser`;
  $("title").textContent = `${model.model}:${model.version}`;
  $("about").textContent = model.description || "";
  ort = await import("./ort.wasm.min.mjs");
  ort.env.wasm.numThreads = 1;
  ort.env.wasm.proxy = false;
  ort.env.wasm.wasmPaths = new URL("./", import.meta.url).href;
  state.version = ort.env.versions && ort.env.versions.web;
  session = await ort.InferenceSession.create(model.model_file, { executionProviders: ["wasm"] });
  state.loadMs = performance.now();
  $("status").textContent =
    `runs in this browser: onnxruntime-web ${state.version} (WebAssembly), loaded in ` +
    `${Math.round(state.loadMs)} ms; nothing is sent anywhere`;
  if (model.image) setUpPad();
  else setUpValues();
  state.ready = true;
  document.body.classList.add("ready");
}

main().catch(fail);
