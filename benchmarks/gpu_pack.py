"""Pack the data of every GPU job (benchmarks/gpu_session.sh) into the room a GPU call leaves beside the repository.

A call carries the repository (tracked and untracked-not-ignored files) and the carried folders, 64 MiB in all.
This writes what `medinpaint pack --validation-cases N` writes (clean slices, bit-packed masks, tissue maps and
vertebra levels; the corrupted images are rebuilt on load) at LZMA preset 9e (benchmarks/repack_lzma.py), for
the first --validation-cases slices of patients 450-499 and as many training patients, 000 upward, as fit
under 64 MiB less --margin-mb less the repository as it is now. All 450 fit (60.1 MB) while the repository stays
under about 5.9 MB; every shipped checkpoint added to it displaces training patients (about 13.2 kB a slice,
132 kB a patient), so run this again whenever the repository grows or shrinks.

    .venv/bin/python benchmarks/gpu_pack.py --data ../shared/data/dmiai-ct -o packed/gpu
    .venv/bin/python benchmarks/gpu_pack.py --data packed/gpu -o packed/gpu      # re-fit a pack (faster; drops patients only)
    bash benchmarks/travel_size.sh
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

from medinpaint.data import read_slices, split_by_patient
from medinpaint.data.cache import INDEX, pack
from medinpaint.data.split import patient_of

sys.path.insert(0, str(Path(__file__).resolve().parent))
from repack_lzma import strong_lzma  # noqa: E402

LIMIT = 64 * 1024 * 1024


def repository_bytes(root: Path) -> int:
    """What travels of the repository itself: tracked and untracked-not-ignored files that exist."""
    names = subprocess.run(["git", "ls-files", "-co", "--exclude-standard", "-z"], cwd=root, check=True,
                           capture_output=True).stdout.decode().split("\0")
    return sum((root / n).stat().st_size for n in names if n and (root / n).is_file())


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="the DM-i-AI folder, or a packed cache of it")
    ap.add_argument("-o", "--output", type=Path, required=True)
    ap.add_argument("--validation-cases", type=int, default=64)
    ap.add_argument("--margin-mb", type=float, default=1.0, help="MiB to leave free under the 64 MiB")
    ap.add_argument("--max-patients", type=int, default=None, help="at most this many training patients")
    args = ap.parse_args()

    root = Path(subprocess.run(["git", "rev-parse", "--show-toplevel"], check=True, capture_output=True, text=True).stdout.strip())
    repo = repository_bytes(root)
    budget = LIMIT - int(args.margin_mb * 1024 * 1024) - repo
    slices = read_slices(args.data)
    train_idx, val_idx = split_by_patient(slices.ids)
    keep_val = val_idx[: args.validation_cases]
    patients = np.array([patient_of(slices.ids[i]) for i in train_idx])
    order = sorted(set(patients), key=lambda p: (len(p), p))
    n = min(len(order), args.max_patients or len(order))
    with tempfile.TemporaryDirectory(dir=args.output.parent if args.output.parent.exists() else None) as work:
        work = Path(work)
        sample = [order[i] for i in np.linspace(0, len(order) - 1, min(45, len(order))).astype(int)]
        probe = train_idx[np.isin(patients, sample)]  # bytes per slice, from 45 patients across the range
        with strong_lzma():
            pack(slices.subset(probe), work / "probe")
        per_slice = folder_bytes(work / "probe") / len(probe)
        per_patient = per_slice * len(probe) / len(sample)
        n = min(n, int((budget - per_slice * len(keep_val)) * 0.995 / per_patient))
        print(f"repository {repo:,} bytes; room for the pack {budget:,} bytes; about {per_slice:,.0f} bytes a slice", flush=True)
        while True:
            chosen = np.sort(np.concatenate([train_idx[np.isin(patients, order[:n])], keep_val]))
            trial = work / "pack"
            shutil.rmtree(trial, ignore_errors=True)
            with strong_lzma():
                pack(slices.subset(chosen), trial)
            size = folder_bytes(trial)
            print(f"{n} training patients and {len(keep_val)} validation slices: {size:,} bytes", flush=True)
            if size <= budget:
                break
            n -= max(1, int(np.ceil((size - budget) / per_patient)))
        assert (trial / INDEX).is_file()
        shutil.rmtree(args.output, ignore_errors=True)
        shutil.move(str(trial), args.output)
    print(f"{args.output}: patients {order[0]}-{order[n - 1]} ({int(np.isin(patients, order[:n]).sum())} training slices) "
          f"and {len(keep_val)} validation slices, {size:,} bytes; with the repository {repo + size:,} of {LIMIT:,} bytes")


if __name__ == "__main__":
    main()
