"""Write streamed samples to disk chunk by chunk: a .npy stack (memory-mapped) or a DM-i-AI folder.

Nothing here holds more than one chunk in memory, and nothing appears at the output path until every chunk
is written (temporary files or folder beside it, renamed at the end).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from contextlib import ExitStack
from pathlib import Path

import numpy as np

from medinpaint.data.png import write_gray_png
from medinpaint.data.slices import to_uint8
from medinpaint.outputs import atomic_dir, atomic_file, check_output_path
from medinpaint.synthesis.generator import Samples


def npy_paths(path: Path) -> dict[str, Path]:
    """X.npy holds the slices; X.tissue.npy and X.vertebrae.npy beside it the rest of each triple."""
    path = Path(path)
    stem = path.with_suffix("")
    return {"images": path, "tissue": Path(f"{stem}.tissue.npy"), "vertebrae": Path(f"{stem}.vertebrae.npy")}


def write_npy(path: Path, chunks: Iterable[Samples], n: int, size: int, overwrite: bool = False,
              inputs: Sequence[Path] = ()) -> dict[str, Path]:
    """Stream n samples into X.npy (float32 (n,1,H,W) in [0,1]), X.tissue.npy (uint8 (n,H,W)) and
    X.vertebrae.npy (int16 (n,)), through `np.lib.format.open_memmap` so n may exceed the memory. None of them
    may be, or hold, one of `inputs` (the generator's checkpoint)."""
    paths = npy_paths(path)
    for p in paths.values():
        check_output_path(p, list(inputs), overwrite, kind="file")
    specs = {"images": (np.float32, (n, 1, size, size)), "tissue": (np.uint8, (n, size, size)), "vertebrae": (np.int16, (n,))}
    with ExitStack() as stack:
        arrays = {}
        for key, target in paths.items():
            tmp = stack.enter_context(atomic_file(target))
            dtype, shape = specs[key]
            arrays[key] = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=shape)
        pos = 0
        for chunk in chunks:
            for key, part in zip(specs, chunk):
                arrays[key][pos : pos + len(part)] = part
            pos += len(chunk.images)
        for arr in arrays.values():
            arr.flush()
        del arrays
    return paths


def case_ids(n: int) -> list[str]:
    """Synthetic case ids `synth-000000`...: each its own patient (no `_K` slice number), none a validation patient."""
    width = max(6, len(str(n - 1)))
    return [f"synth-{i:0{width}d}" for i in range(n)]


def write_dmiai(folder: Path, chunks: Iterable[Samples], n: int, overwrite: bool = False, inputs: Sequence[Path] = ()) -> Path:
    """Stream n samples into a DM-i-AI-layout folder (ct/ tissue/ vertebrae/) that `read_slices` and
    `medinpaint train --data` accept as a clean training set; it may not be, or hold, one of `inputs`."""
    check_output_path(Path(folder), list(inputs), overwrite)
    ids = case_ids(n)
    with atomic_dir(Path(folder), overwrite=overwrite) as tmp:
        for kind in ("ct", "tissue", "vertebrae"):
            (tmp / kind).mkdir()
        pos = 0
        for chunk in chunks:
            for image, tissue, level in zip(to_uint8(chunk.images[:, 0]), chunk.tissue, chunk.vertebrae):
                case = ids[pos]
                write_gray_png(tmp / "ct" / f"ct_{case}.png", image)
                write_gray_png(tmp / "tissue" / f"tissue_{case}.png", tissue)
                (tmp / "vertebrae" / f"vertebrae_{case}.txt").write_text(str(int(level)))
                pos += 1
    return Path(folder)
