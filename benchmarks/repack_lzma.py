"""Recompress a packed cache's shards in place with LZMA preset 9e (the strongest), same format and contents.

`medinpaint pack` writes LZMA at zipfile's default (preset 6). Preset 9e makes the GPU pack (patients 0-449 and
64 validation slices) 4.6 % smaller, 63,066,761 -> 60,148,076 bytes, room for 22 more training patients beside
the repository under the 64 MiB a GPU call carries (benchmarks/travel_size.sh; benchmarks/gpu_pack.py packs at
9e directly). Any LZMA zip member reads back with the standard decoder (the member header carries its
parameters), so `medinpaint.data.cache.load` and `np.load` read the result unchanged; the script checks that
every array reads back equal before it replaces a shard. About 45 s a shard on one core.

    .venv/bin/python benchmarks/repack_lzma.py packed/gpu
"""

from __future__ import annotations

import argparse
import contextlib
import lzma
import struct
import sys
import zipfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

FILTER = {"id": lzma.FILTER_LZMA1, "preset": 9 | lzma.PRESET_EXTREME}


class _StrongLZMA(zipfile.LZMACompressor):  # zipfile's own, with the preset chosen
    def _init(self) -> bytes:
        props = lzma._encode_filter_properties(FILTER)
        self._comp = lzma.LZMACompressor(lzma.FORMAT_RAW, filters=[FILTER])
        return struct.pack("<BBH", 9, 4, len(props)) + props


@contextlib.contextmanager
def strong_lzma() -> Iterator[None]:
    saved = zipfile.LZMACompressor
    zipfile.LZMACompressor = _StrongLZMA
    try:
        yield
    finally:
        zipfile.LZMACompressor = saved


def repack(shard: Path) -> tuple[int, int]:
    with zipfile.ZipFile(shard) as zf:
        members = {info.filename: zf.read(info) for info in zf.infolist()}
    tmp = shard.with_name(shard.name + ".tmp")
    with strong_lzma(), zipfile.ZipFile(tmp, "w", compression=zipfile.ZIP_LZMA) as zf:
        for name, data in members.items():
            with zf.open(name, "w", force_zip64=True) as f:
                f.write(data)
    with np.load(shard, allow_pickle=False) as old, np.load(tmp, allow_pickle=False) as new:
        if sorted(old.files) != sorted(new.files) or any(not np.array_equal(old[k], new[k]) for k in old.files):
            tmp.unlink()
            raise SystemExit(f"{shard}: the recompressed shard does not read back equal; left unchanged")
    before, after = shard.stat().st_size, tmp.stat().st_size
    tmp.replace(shard)
    return before, after


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("folder", type=Path, help="a packed cache (medinpaint pack -o FOLDER)")
    args = ap.parse_args()
    shards = sorted(args.folder.glob("shard-*.npz"))
    if not shards:
        raise SystemExit(f"{args.folder}: no shard-*.npz files")
    total_before = total_after = 0
    for shard in shards:
        before, after = repack(shard)
        total_before, total_after = total_before + before, total_after + after
        print(f"{shard.name}: {before:,} -> {after:,} bytes", file=sys.stderr, flush=True)
    print(f"{args.folder}: {total_before:,} -> {total_after:,} bytes ({total_after / total_before - 1:+.1%})")


if __name__ == "__main__":
    main()
