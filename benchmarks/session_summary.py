"""Summarise one call of benchmarks/gpu_session.sh: each job's throughput (images/s from its log.csv), steps and
wall time, the CT inpainter's throughput alone (SOLO=1) against its throughput beside the other jobs, and the
GPU's utilisation and memory (nvidia-smi samples). Standard library only, so it runs on the GPU machine as is.

    python3 benchmarks/session_summary.py --logs runs/gpu-session/logs/train \
        --job ct=runs/gpu-session/ct-unet --job diffusion-64=runs/gpu-session/synth-diffusion-64 ...

`--job NAME=RUN_FOLDER[:ROWS]` names a run folder; ROWS is how many data rows its log.csv held before this call
(a resumed run appends), so only this call's rows are counted. The first row of a call is left out of the
throughput: it holds the start-up and `torch.compile` time. "beside all" is the CT's median over the rows
logged while every other training job was still training (by training time since the call's first row, which
lags the wall clock by the start-up only). Writes LOGS/summary.json and LOGS/summary.md and prints the table.
"""

from __future__ import annotations

import argparse
import csv
import json
import statistics
from pathlib import Path


def read_rows(log: Path, skip: int) -> list[dict[str, float]]:
    if not log.is_file():
        return []
    with open(log, newline="") as f:
        rows = list(csv.DictReader(f))[skip:]
    out = []
    for r in rows:
        try:
            out.append({k: float(v) for k, v in r.items() if v not in (None, "")})
        except ValueError:
            continue
    return out


def job_summary(name: str, folder: Path, skip: int) -> dict:
    rows = read_rows(folder / "log.csv", skip)
    entry: dict = {"job": name, "folder": str(folder), "rows": len(rows), "weights": (folder / "model.safetensors").is_file()}
    if not rows:
        return entry
    steady = [r["images_per_s"] for r in rows[1:] if "images_per_s" in r] or [rows[0].get("images_per_s", 0.0)]
    entry.update({
        "first_step": int(rows[0]["step"]), "last_step": int(rows[-1]["step"]),
        "train_s_this_call": round(rows[-1]["elapsed_s"] - rows[0]["elapsed_s"], 1),
        "train_s_total": round(rows[-1]["elapsed_s"], 1),
        "images_per_s_median": round(statistics.median(steady), 1),
        "images_per_s_max": round(max(steady), 1),
        "last_loss": rows[-1].get("loss"),
        "_rows": rows,
    })
    vals = {k: v for k, v in rows[-1].items() if k.startswith("val_")}
    if not vals:  # validation rows are not every row: take the last one that has them
        vals = next(({k: v for k, v in r.items() if k.startswith("val_")} for r in reversed(rows) if any(k.startswith("val_") for k in r)), {})
    entry.update({k: round(v, 5) for k, v in vals.items()})
    return entry


def gpu_stats(path: Path) -> dict:
    """Mean and max utilisation and the peak memory from `nvidia-smi --query-gpu=... --format=csv,noheader,nounits`."""
    util, mem = [], []
    if path.is_file():
        for line in path.read_text().splitlines():
            parts = [p.strip() for p in line.split(",")]
            try:
                util.append(float(parts[1]))
                mem.append(float(parts[2]))
            except (IndexError, ValueError):
                continue
    if not util:
        return {}
    busy = [u for u in util if u > 0]
    return {"samples": len(util), "util_mean_pct": round(statistics.mean(util), 1),
            "util_mean_pct_while_busy": round(statistics.mean(busy), 1) if busy else 0.0,
            "memory_peak_mib": max(mem)}


def study_table(path: Path) -> list[dict]:
    """Fat Dice per (arm, ratio, n): the mean over the seeds finished, and how many there were."""
    if path.suffix == ".csv":
        with open(path, newline="") as f:
            rows = list(csv.DictReader(f))
    else:  # the rows an interrupted study kept in its work folder
        from medinpaint.segmentation.study import kept_rows

        rows = kept_rows(path)
    groups: dict[tuple, list[float]] = {}
    for r in rows:
        groups.setdefault((r["arm"], int(r["ratio"]), str(r["n"])), []).append(float(r["dice_fat"]))
    return [{"arm": a, "ratio": k, "n": n, "dice_fat": round(statistics.mean(v), 4), "seeds": len(v)}
            for (a, k, n), v in groups.items()]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--logs", type=Path, required=True, help="the call's log folder (jobs.tsv, gpu.csv; summary written here)")
    ap.add_argument("--job", action="append", default=[], help="NAME=RUN_FOLDER[:ROWS_BEFORE]")
    ap.add_argument("--stage", default="")
    ap.add_argument("--report", type=Path, help="a `synth report` summary.json: its headline figures are added")
    ap.add_argument("--speed", type=Path, help="benchmarks/synth_speed.py --json output: added as is")
    ap.add_argument("--samplers", type=Path, help="benchmarks/sampler_quality.py --json output: added as is")
    ap.add_argument("--study", type=Path, help="`segment study` results.csv, or the rows an interrupted one kept (.partial/rows.jsonl)")
    args = ap.parse_args()

    jobs = []
    for spec in args.job:
        name, _, rest = spec.partition("=")
        folder, _, skip = rest.rpartition(":") if rest.rpartition(":")[2].isdigit() else (rest, "", "0")
        jobs.append(job_summary(name, Path(folder), int(skip or 0)))
    walls = {}
    tsv = args.logs / "jobs.tsv"
    if tsv.is_file():
        for line in tsv.read_text().splitlines():
            parts = line.split("\t")
            if len(parts) == 4:
                walls[parts[0]] = {"wall_s": int(parts[2]) - int(parts[1]), "rc": int(parts[3])}
    for j in jobs:
        j.update(walls.get(j["job"], {}))
    others = [{"job": name, **w} for name, w in walls.items() if name not in {j["job"] for j in jobs}]

    # The CT's throughput while every other training job still trained (solo and CT runs are not "others").
    ct = next((j for j in jobs if j["job"] == "ct" and j.get("_rows")), None)
    beside_jobs = [j for j in jobs if j["job"] not in ("ct", "ct-solo") and j.get("_rows")]
    if ct and beside_jobs:
        until = min(j["train_s_this_call"] for j in beside_jobs)
        start = ct["_rows"][0]["elapsed_s"]
        beside = [r["images_per_s"] for r in ct["_rows"][1:] if r["elapsed_s"] - start <= until]
        if beside:
            ct["images_per_s_beside_all"] = round(statistics.median(beside), 1)
            ct["beside_all_window_s"] = round(until, 1)
    solo = next((j for j in jobs if j["job"] == "ct-solo" and j.get("_rows")), None)
    comparison = {}
    if ct and solo:
        comparison = {"ct_solo_images_per_s": solo["images_per_s_median"], "ct_concurrent_images_per_s": ct["images_per_s_median"],
                      "concurrent_over_solo": round(ct["images_per_s_median"] / max(solo["images_per_s_median"], 1e-9), 3)}
        if "images_per_s_beside_all" in ct:
            comparison["ct_beside_all_images_per_s"] = ct["images_per_s_beside_all"]
            comparison["beside_all_over_solo"] = round(ct["images_per_s_beside_all"] / max(solo["images_per_s_median"], 1e-9), 3)
    for j in jobs:
        j.pop("_rows", None)

    summary = {"stage": args.stage, "jobs": jobs, "other_jobs": others, "solo_vs_concurrent": comparison,
               "gpu": gpu_stats(args.logs / "gpu.csv")}
    if args.report and args.report.is_file():
        rep = json.loads(args.report.read_text())
        keep = ("label", "fid", "fid_at_heldout_n", "precision", "recall", "precision_at_heldout_n", "recall_at_heldout_n", "samples_per_s", "utility_mae", "utility_mae_vs_real")
        summary["report"] = {"heldout_real": {k: rep["heldout_real"].get(k) for k in ("n", "fid", "precision", "recall")},
                             "models": [{k: m[k] for k in keep if k in m} for m in rep.get("models", [])],
                             **({"utility_real_mae": rep["utility"]["real_mae"]} if "utility" in rep else {})}
    if args.speed and args.speed.is_file():
        summary["speed"] = [{k: r.get(k) for k in ("run", "compile", "n", "samples_per_s")}
                            for r in map(json.loads, args.speed.read_text().splitlines()) if r]
    if args.samplers and args.samplers.is_file():
        summary["samplers"] = [{k: r.get(k) for k in ("run", "fid", "precision", "recall", "samples_per_s", "heldout_fid")}
                               for r in map(json.loads, args.samplers.read_text().splitlines()) if r]
    if args.study and args.study.is_file():
        summary["study"] = study_table(args.study)
    device = args.logs / "device.txt"
    if device.is_file():
        summary["device"] = device.read_text().strip()
    (args.logs / "summary.json").write_text(json.dumps(summary, indent=1))

    cols = ("job", "rows", "first_step", "last_step", "train_s_this_call", "images_per_s_median", "images_per_s_beside_all",
            "wall_s", "rc", "weights")
    lines = [f"# gpu_session.sh {args.stage}", "", "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(j.get(c, "")) for c in cols) + " |" for j in jobs]
    if others:
        lines += ["", "other jobs: " + ", ".join(f"{o['job']} {o['wall_s']} s (exit {o['rc']})" for o in others)]
    if "report" in summary:
        r = summary["report"]
        lines += ["", f"report: held-out real {r['heldout_real']}"] + [f"report: {m}" for m in r["models"]]
        if "utility_real_mae" in r:
            lines.append(f"report: utility, real slices MAE {r['utility_real_mae']}")
    for row in summary.get("speed", []):
        lines.append(f"speed: {row}")
    for row in summary.get("samplers", []):
        lines.append(f"samplers: {row}")
    for row in summary.get("study", []):
        lines.append(f"study: {row}")
    for key, value in (("solo vs concurrent", comparison), ("gpu", summary["gpu"])):
        if value:
            lines += ["", f"{key}: " + ", ".join(f"{k} {v}" for k, v in value.items())]
    text = "\n".join(lines) + "\n"
    (args.logs / "summary.md").write_text(text)
    print(text, end="")


if __name__ == "__main__":
    main()
