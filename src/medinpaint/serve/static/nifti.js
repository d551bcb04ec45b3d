// Read a NIfTI-1 volume in the browser (.nii, or .nii.gz through DecompressionStream) and cut display slices from it.
// Slices are shown as medinpaint's volume path shows them: the volume turned to the closest RAS orientation of its
// header's affine (as nibabel and `medinpaint predict` turn it), then axial slice k with anterior at the top and the
// patient's right on the left, mapped to 0..255 the same way (the DM-i-AI CT window -150..250 HU when the volume
// looks like CT in Hounsfield units, else its 0.5th..99.5th percentiles) and resized to 256x256.
"use strict";

const NIFTI_TYPES = { 2: Uint8Array, 4: Int16Array, 8: Int32Array, 16: Float32Array, 64: Float64Array, 256: Int8Array, 512: Uint16Array, 768: Uint32Array };

async function readNifti(file) {
  let buffer = await file.arrayBuffer();
  const bytes = new Uint8Array(buffer, 0, 2);
  if (bytes[0] === 0x1f && bytes[1] === 0x8b) {
    buffer = await new Response(new Blob([buffer]).stream().pipeThrough(new DecompressionStream("gzip"))).arrayBuffer();
  }
  let view = new DataView(buffer);
  let little = view.getInt32(0, true) === 348;
  if (!little && view.getInt32(0, false) !== 348) throw new Error(`${file.name} is not a NIfTI-1 volume`);
  const dims = [1, 2, 3, 4].map((i) => view.getInt16(40 + 2 * i, little));
  const ndim = view.getInt16(40, little);
  if (ndim < 3 || (ndim > 3 && dims[3] > 1)) throw new Error(`${file.name}: a ${ndim}-D image; the page shows 3-D volumes`);
  const type = NIFTI_TYPES[view.getInt16(70, little)];
  if (!type) throw new Error(`${file.name}: data type ${view.getInt16(70, little)} is not supported here`);
  const offset = Math.round(view.getFloat32(108, little));
  let slope = view.getFloat32(112, little);
  const inter = view.getFloat32(116, little) || 0;
  if (!slope) slope = 1;
  const count = dims[0] * dims[1] * dims[2];
  const needed = offset + count * type.BYTES_PER_ELEMENT;
  if (buffer.byteLength < needed) {
    throw new Error(`${file.name}: truncated: ${dims[0]}×${dims[1]}×${dims[2]} voxels need ${needed} bytes, the file has ${buffer.byteLength}`);
  }
  const copy = buffer.slice(offset, needed);
  let raw = new type(copy);
  if (!little && type.BYTES_PER_ELEMENT > 1) raw = swapped(copy, type);
  const values = new Float32Array(count);
  for (let i = 0; i < count; i++) values[i] = raw[i] * slope + inter;
  const affine = bestAffine(view, little);
  const axes = storedAxes(affine || [[-1, 0, 0], [0, 1, 0], [0, 0, 1]]);
  // orientation: where the stored axes point ("LPS"), null when the header gives none
  return { dims: dims.slice(0, 3), values, window: intensityWindow(values), orientation: affine && axisCodes(axes), ...rasLayout(dims, axes) };
}

// The 3x3 rotation-and-zoom part of the affine nibabel would use: the sform when its code is set, else the qform,
// else null (no orientation given: NIfTI's default, Analyze's LAS, applies).
function bestAffine(view, little) {
  if (view.getInt16(254, little) !== 0) {
    return [280, 296, 312].map((at) => [0, 1, 2].map((j) => view.getFloat32(at + 4 * j, little)));
  }
  if (view.getInt16(252, little) !== 0) {
    const [b, c, d] = [256, 260, 264].map((at) => view.getFloat32(at, little));
    const a = Math.sqrt(Math.max(0, 1 - b * b - c * c - d * d));
    const qfac = view.getFloat32(76, little) < 0 ? -1 : 1;
    const r = [[a * a + b * b - c * c - d * d, 2 * (b * c - a * d), 2 * (b * d + a * c)],
      [2 * (b * c + a * d), a * a + c * c - b * b - d * d, 2 * (c * d - a * b)],
      [2 * (b * d - a * c), 2 * (c * d + a * b), a * a + d * d - c * c - b * b]];
    return r.map((row) => [row[0], row[1], row[2] * qfac]);
  }
  return null;
}

// For each stored axis, the RAS axis it runs closest to and its direction along it (+1 or -1), picked as nibabel's
// io_orientation picks them: the columns normalised, the most clearly aligned axis first, each RAS axis used once.
function storedAxes(m) {
  const r = m.map((row) => row.slice());
  for (let j = 0; j < 3; j++) {
    const norm = Math.hypot(r[0][j], r[1][j], r[2][j]) || 1;
    for (let i = 0; i < 3; i++) r[i][j] /= norm;
  }
  const strength = (j) => Math.max(...r.map((row) => row[j] * row[j]));
  const axes = new Array(3);
  const used = [false, false, false];
  for (const j of [0, 1, 2].sort((p, q) => strength(q) - strength(p))) {
    let best = -1;
    for (let i = 0; i < 3; i++) if (!used[i] && (best < 0 || Math.abs(r[i][j]) > Math.abs(r[best][j]))) best = i;
    used[best] = true;
    axes[j] = { ras: best, sign: r[best][j] < 0 ? -1 : 1 };
  }
  return axes;
}

// "LPS" and the like: where each stored axis points.
function axisCodes(axes) {
  return axes.map(({ ras, sign }) => ["LR", "PA", "IS"][ras][sign > 0 ? 1 : 0]).join("");
}

// The volume seen in RAS without a copy: its RAS sizes nx, ny, nz and, per RAS axis, the stored offset of index 0
// and the step of one voxel along it.
function rasLayout(dims, axes) {
  const strides = [1, dims[0], dims[0] * dims[1]];
  const n = [0, 0, 0], start = [0, 0, 0], step = [0, 0, 0];
  axes.forEach(({ ras, sign }, stored) => {
    n[ras] = dims[stored];
    start[ras] = sign > 0 ? 0 : (dims[stored] - 1) * strides[stored];
    step[ras] = sign * strides[stored];
  });
  return { nx: n[0], ny: n[1], nz: n[2], start, step };
}

function swapped(buffer, type) {
  const view = new DataView(buffer);
  const out = new type(buffer.byteLength / type.BYTES_PER_ELEMENT);
  const getter = { Int16Array: "getInt16", Uint16Array: "getUint16", Int32Array: "getInt32", Uint32Array: "getUint32",
    Float32Array: "getFloat32", Float64Array: "getFloat64" }[type.name];
  for (let i = 0; i < out.length; i++) out[i] = view[getter](i * type.BYTES_PER_ELEMENT, false);
  return out;
}

// [low, high] that map to 0 and 255, as medinpaint.volume_inference.choose_intensity picks them.
function intensityWindow(values) {
  const step = Math.max(1, Math.floor(values.length / 200000));
  const sample = [];
  for (let i = 0; i < values.length; i += step) sample.push(values[i]);
  sample.sort((a, b) => a - b);
  const at = (q) => sample[Math.min(sample.length - 1, Math.floor(q * (sample.length - 1)))];
  if (at(0.01) < -100) return [-150, 250];
  const low = at(0.005), high = at(0.995);
  return [low, high > low ? high : low + 1];
}

// Axial slice k of the RAS view as 256x256 gray levels: anterior up, patient right on the left, nearest-neighbour resized.
function niftiSlice(volume, k) {
  const { nx, ny, values, start, step, window: [low, high] } = volume;
  const out = new Uint8Array(SIZE * SIZE);
  const plane = start[0] + start[1] + start[2] + k * step[2];
  for (let r = 0; r < SIZE; r++) {
    const row = plane + (ny - 1 - Math.floor((r * ny) / SIZE)) * step[1];
    for (let c = 0; c < SIZE; c++) {
      const v = values[row + (nx - 1 - Math.floor((c * nx) / SIZE)) * step[0]];
      out[r * SIZE + c] = Math.round(255 * Math.min(1, Math.max(0, (v - low) / (high - low))));
    }
  }
  return out;
}
