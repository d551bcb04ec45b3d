"""Seconds to fill a CT volume through NIfTI on CPU, end to end (read, fill every masked slice, write).

    .venv/bin/python benchmarks/volume_speed.py [--shape 512 512 100] [--spacing 0.78 0.78 2.5] [--backend onnx torch]

The volume is a synthetic int16 CT in Hounsfield units (air, a soft-tissue ellipse with a fat rim) with a brush-stroke
mask on every slice, written to a temporary folder; the shipped inpainter fills it with `fill_nifti`, the same path as
`medinpaint predict -i scan.nii.gz --mask mask.nii.gz`. At 0.78 mm the slices are resampled to the model's 2 mm and
back, as a real 512x512 scan would be. One timed run per backend after an untimed warm-up fill of one slice.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

from medinpaint.inference import Inpainter
from medinpaint.masks import BrushStrokes
from medinpaint.volume_inference import fill_nifti


def synthetic_ct(shape: tuple[int, int, int], rng: np.random.Generator) -> np.ndarray:
    x, y = np.meshgrid(np.linspace(-1, 1, shape[0]), np.linspace(-1, 1, shape[1]), indexing="ij")
    r = (x / 0.8) ** 2 + (y / 0.6) ** 2
    plane = np.where(r < 0.75, 40, np.where(r < 1, -100, -1000)).astype(np.int16)
    return (plane[..., None] + rng.integers(-20, 20, shape)).astype(np.int16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--shape", type=int, nargs=3, default=[512, 512, 100])
    parser.add_argument("--spacing", type=float, nargs=3, default=[0.78, 0.78, 2.5])
    parser.add_argument("--backend", nargs="+", default=["onnx", "torch"])
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    shape = tuple(args.shape)
    hu = synthetic_ct(shape, rng)
    brush = BrushStrokes()
    mask = np.stack([brush(rng, shape[:2]) for _ in range(shape[2])], axis=-1).astype(np.uint8)
    affine = np.diag([*args.spacing, 1.0])
    print(f"volume {shape}, spacing {args.spacing} mm, {mask.mean():.0%} of voxels masked, torch threads {torch.get_num_threads()}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        nib.save(nib.Nifti1Image(hu, affine), str(folder / "ct.nii.gz"))
        nib.save(nib.Nifti1Image(mask, affine), str(folder / "mask.nii.gz"))
        one = mask.copy()
        one[..., 1:] = 0
        nib.save(nib.Nifti1Image(one, affine), str(folder / "one.nii.gz"))
        for backend in args.backend:
            inpainter = Inpainter.from_pretrained(backend=backend)
            fill_nifti(inpainter, folder / "ct.nii.gz", folder / "one.nii.gz", folder / f"warm-{backend}.nii.gz")
            start = time.perf_counter()
            record = fill_nifti(inpainter, folder / "ct.nii.gz", folder / "mask.nii.gz", folder / f"filled-{backend}.nii.gz")
            seconds = time.perf_counter() - start
            print(f"{inpainter.backend}: {seconds:.1f} s for {record['slices_filled']} slices "
                  f"({1000 * seconds / record['slices_filled']:.0f} ms a slice), resampled to {record['resampled_to']}")


if __name__ == "__main__":
    main()
