// The page: try a sample, or load a slice (PNG, or a slice of a NIfTI volume), draw or load the mask, ask the server
// to fill it, compare with the mask shown over the result, and download.
"use strict";

const $ = (id) => document.getElementById(id);
const editor = $("editor");
const ctx = editor.getContext("2d");
const state = { slice: null, mask: new Uint8Array(SIZE * SIZE), tissue: null, drawing: false, last: null, volume: null, request: 0, settled: 0 };  // settled: fills answered, used or dropped

function say(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

async function loadGray(input, what) {
  const file = input.files[0];
  if (!file) return null;
  const { pixels, width, height } = await decodeGray(file);
  if (width !== SIZE || height !== SIZE) throw new Error(`${what} must be ${SIZE}×${SIZE}, got ${width}×${height}`);
  return pixels;
}

// The slice in gray with the mask tinted red.
function render() {
  const img = ctx.createImageData(SIZE, SIZE);
  for (let i = 0; i < SIZE * SIZE; i++) {
    const g = state.slice ? state.slice[i] : 0;
    const m = state.mask[i];
    img.data.set(m ? [128 + (g >> 1), g >> 1, g >> 1, 255] : [g, g, g, 255], 4 * i);
  }
  ctx.putImageData(img, 0, 0);
}

// A new slice starts afresh: no mask, no result, and no side information the user did not give for it (a sample's
// tissue map and vertebra level belong to that sample). Counting it as a new request drops a fill still under way.
// The inputs changed: a fill under way, or the one shown, no longer answers them.
function dropResult() {
  state.request += 1;
  $("result-panel").hidden = true;
  $("download").href = "#";
}

function startAfresh() {
  dropResult();
  state.mask.fill(0);
  state.tissue = null;
  $("tissue-file").value = "";
  $("mask-file").value = "";
  $("vertebrae").value = "";
}

function paint(x, y) {
  const r = Number($("brush").value) / 2;
  const value = $("erase").checked ? 0 : 1;
  for (let yy = Math.max(0, Math.floor(y - r)); yy <= Math.min(SIZE - 1, Math.ceil(y + r)); yy++) {
    for (let xx = Math.max(0, Math.floor(x - r)); xx <= Math.min(SIZE - 1, Math.ceil(x + r)); xx++) {
      if ((xx - x) ** 2 + (yy - y) ** 2 <= r * r) state.mask[yy * SIZE + xx] = value;
    }
  }
}

function stroke(event) {
  const rect = editor.getBoundingClientRect();
  const p = { x: ((event.clientX - rect.left) * SIZE) / rect.width, y: ((event.clientY - rect.top) * SIZE) / rect.height };
  const from = state.last || p;
  const steps = Math.max(1, Math.ceil(Math.hypot(p.x - from.x, p.y - from.y)));
  for (let s = 1; s <= steps; s++) paint(from.x + ((p.x - from.x) * s) / steps, from.y + ((p.y - from.y) * s) / steps);
  state.last = p;
  render();
}

editor.addEventListener("pointerdown", (e) => {
  if (!state.slice) return;
  state.drawing = true;
  state.last = null;
  dropResult();
  editor.setPointerCapture(e.pointerId);
  stroke(e);
});
editor.addEventListener("pointermove", (e) => state.drawing && stroke(e));
for (const end of ["pointerup", "pointercancel", "lostpointercapture"]) editor.addEventListener(end, () => { state.drawing = false; });

$("slice-file").addEventListener("change", async () => {
  try {
    const slice = await loadGray($("slice-file"), "the slice");
    if (!slice) return;
    startAfresh();
    state.slice = slice;
    state.volume = null;
    $("sample").value = "";
    $("volume-file").value = "";
    $("slice-picker").hidden = true;
    $("fill").disabled = !state.slice;
    say("Draw over the missing pixels, or load a mask, then press Fill.");
  } catch (err) {
    $("slice-file").value = ""; // the file refused is not the slice shown
    say(err.message, true);
  }
  render();
});

$("mask-file").addEventListener("change", async () => {
  try {
    const pixels = await loadGray($("mask-file"), "the mask");
    if (pixels) {
      state.mask = pixels.map((v) => (v >= 128 ? 1 : 0));
      dropResult();
    }
  } catch (err) {
    $("mask-file").value = "";
    say(err.message, true);
  }
  render();
});

// The tissue map is optional: the one sent is the one the input holds, none once it is cleared or its file refused
// (a sample's map, or an earlier file's, must not travel with a slice it was not chosen for).
$("tissue-file").addEventListener("change", async () => {
  let tissue = null;
  try {
    tissue = await loadGray($("tissue-file"), "the tissue map");
  } catch (err) {
    $("tissue-file").value = "";
    say(err.message, true);
  }
  state.tissue = tissue;
  dropResult();
});

$("vertebrae").addEventListener("input", dropResult);

async function sampleImage(kind, id) {
  const response = await fetch(`../sample-files/${kind}/${kind}_${id}.png`);
  if (!response.ok) throw new Error(`the sample's ${kind} image is missing (${response.status})`);
  return (await decodeGray(await response.blob())).pixels;
}

async function listSamples() {
  const response = await fetch("../samples");
  if (!response.ok) return;
  for (const c of await response.json()) {
    const option = new Option(`${c.id}${c.vertebrae === null ? "" : ` (vertebra ${c.vertebrae})`}`, c.id);
    option.dataset.vertebrae = c.vertebrae === null ? "" : c.vertebrae;
    $("sample").add(option);
  }
}

// One choice loads the sample's slice, mask, tissue map and vertebra level, and fills it.
$("sample").addEventListener("change", async () => {
  const id = $("sample").value;
  if (!id) return;
  try {
    const [slice, mask, tissue] = await Promise.all(["ct", "mask", "tissue"].map((k) => sampleImage(k, id)));
    if ($("sample").value !== id) return; // another sample was chosen meanwhile
    startAfresh();
    $("slice-file").value = "";
    $("volume-file").value = "";
    $("slice-picker").hidden = true;
    [state.slice, state.mask, state.tissue, state.volume] = [slice, mask.map((v) => (v >= 128 ? 1 : 0)), tissue, null];
    $("vertebrae").value = $("sample").selectedOptions[0].dataset.vertebrae;
    $("fill").disabled = false;
    render();
    $("controls").requestSubmit();
  } catch (err) { say(err.message, true); }
});

function showVolumeSlice() {
  const k = Number($("slice-index").value);
  dropResult(); // a fill of the slice shown before is no longer wanted
  state.slice = niftiSlice(state.volume, k);
  $("slice-number").textContent = `${k + 1} of ${state.volume.nz}`;
  render();
}

$("volume-file").addEventListener("change", async () => {
  const file = $("volume-file").files[0];
  if (!file) return;
  try {
    const volume = await readNifti(file);
    startAfresh();
    state.volume = volume;
    $("sample").value = "";
    $("slice-file").value = "";
    $("slice-index").max = state.volume.nz - 1;
    $("slice-index").value = Math.floor(state.volume.nz / 2);
    $("slice-picker").hidden = false;
    showVolumeSlice();
    $("fill").disabled = false;
    const [low, high] = state.volume.window;
    const stored = state.volume.orientation;
    const turned = stored === "RAS" ? "" : stored === null
      ? " Its header gives no orientation, so it is read as NIfTI's default (LAS), as medinpaint predict reads it: " +
        "slices may be flipped."
      : ` Stored ${stored}, it is shown turned to RAS, as medinpaint predict turns it.`;
    say(`${file.name}: ${state.volume.dims.join("×")}, shown from ${low.toFixed(0)} to ${high.toFixed(0)}, resized ` +
        `to ${SIZE}×${SIZE}. Pick a slice, draw the missing pixels, then press Fill.${turned}`);
  } catch (err) { say(err.message, true); }
});

$("slice-index").addEventListener("input", showVolumeSlice);

// The mask tinted red over the result, so the filled pixels can be told from the known ones.
function renderResultMask(mask) {
  const overlay = $("result-mask").getContext("2d");
  const img = overlay.createImageData(SIZE, SIZE);
  for (let i = 0; i < SIZE * SIZE; i++) if (mask[i]) img.data.set([255, 40, 40, 90], 4 * i);
  overlay.putImageData(img, 0, 0);
}

$("show-mask").addEventListener("change", () => { $("result-mask").hidden = !$("show-mask").checked; });

$("clear-mask").addEventListener("click", () => { state.mask.fill(0); dropResult(); render(); });

$("compare").addEventListener("input", () => {
  $("result").style.clipPath = `inset(0 ${100 - Number($("compare").value)}% 0 0)`;
});

$("controls").addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!state.mask.some((v) => v)) { say("Mark some missing pixels first.", true); return; }
  const corrupted = state.slice.map((g, i) => (state.mask[i] ? 0 : g)); // the wire format: zeros under the mask
  const body = {
    corrupted_image: toBase64(await encodeGrayPng(corrupted, SIZE, SIZE)),
    mask_image: toBase64(await encodeGrayPng(state.mask.map((m) => m * 255), SIZE, SIZE)),
  };
  if (state.tissue) body.tissue_image = toBase64(await encodeGrayPng(state.tissue, SIZE, SIZE));
  if ($("vertebrae").value !== "") body.vertebrae = Number($("vertebrae").value);
  say("Filling…");
  $("fill").disabled = true;
  const ticket = ++state.request;
  const start = performance.now();
  try {
    const response = await fetch("../inpaint", { method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body) });
    const answer = await response.json().catch(() => null); // a proxy may answer with an HTML page
    if (ticket !== state.request) return; // the input changed while this fill ran: its result is stale
    if (!response.ok || !answer) throw new Error(answer?.detail || `the server answered ${response.status} ${response.statusText}`.trim());
    const url = `data:image/png;base64,${answer.reconstructed_image}`;
    $("before").src = `data:image/png;base64,${body.corrupted_image}`;
    $("result").src = url;
    $("download").href = url;
    renderResultMask(state.mask);
    $("result-panel").hidden = false;
    $("compare").dispatchEvent(new Event("input"));
    say(`Filled in ${Math.round(performance.now() - start)} ms.`);
  } catch (err) {
    if (ticket === state.request) {
      $("result-panel").hidden = true; // an earlier result would pass for the answer to these inputs
      say(`Could not fill: ${err.message}`, true);
    }
  } finally {
    $("fill").disabled = !state.slice;
    state.settled += 1;
  }
});

render();
listSamples();
