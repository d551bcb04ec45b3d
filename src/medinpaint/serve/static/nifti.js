// Read a NIfTI-1 volume in the browser (.nii, or .nii.gz through DecompressionStream) and cut display slices from it.
// Slices are shown as medinpaint's volume path shows them for an RAS-stored volume: axial slice k with anterior at
// the top and the patient's right on the left, mapped to 0..255 the same way (the DM-i-AI CT window -150..250 HU when
// the volume looks like CT in Hounsfield units, else its 0.5th..99.5th percentiles) and resized to 256x256.
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
  return { nx: dims[0], ny: dims[1], nz: dims[2], values, window: intensityWindow(values), ras: storedAsRas(view, little) };
}

// Whether the header says the voxel axes run left-to-right, back-to-front and foot-to-head (RAS, the layout the page
// shows correctly): sform when set, else qform (an identity rotation, qfac 1). The page does not reorient others.
function storedAsRas(view, little) {
  const near = (a, b) => Math.abs(a - b) < 1e-3;
  if (view.getInt16(254, little) > 0) {
    const m = [280, 296, 312].map((at) => [0, 1, 2].map((j) => view.getFloat32(at + 4 * j, little)));
    return m.every((row, i) => row.every((v, j) => (i === j ? v > 0 : near(v, 0))));
  }
  if (view.getInt16(252, little) > 0) {
    const [b, c, d] = [256, 260, 264].map((at) => view.getFloat32(at, little));
    return near(b, 0) && near(c, 0) && near(d, 0) && view.getFloat32(76, little) >= 0;
  }
  return false; // no orientation given
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

// Axial slice k as 256x256 gray levels: anterior up, patient right on the left, nearest-neighbour resized.
function niftiSlice(volume, k) {
  const { nx, ny, values, window: [low, high] } = volume;
  const out = new Uint8Array(SIZE * SIZE);
  for (let r = 0; r < SIZE; r++) {
    const y = ny - 1 - Math.floor((r * ny) / SIZE);
    for (let c = 0; c < SIZE; c++) {
      const x = nx - 1 - Math.floor((c * nx) / SIZE);
      const v = values[k * nx * ny + y * nx + x];
      out[r * SIZE + c] = Math.round(255 * Math.min(1, Math.max(0, (v - low) / (high - low))));
    }
  }
  return out;
}
