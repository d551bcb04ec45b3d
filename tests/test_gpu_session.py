"""A CPU rehearsal of benchmarks/gpu_session.sh, the one-call GPU session: its stages on phantoms with tiny
networks and --steps budgets (DEVICE=cpu), checking what would come back from the GPU machine in $OUT. The
Python packages that machine lacks (benchmarks/gpu_machine_packages.txt) are hidden from the rehearsal.

Each training job is a process of its own, and importing torch costs a few seconds of CPU each, so the
rehearsals are marked slow; together they run about ten such processes.
"""

from __future__ import annotations

import functools
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import tomllib

import pytest
from safetensors import safe_open
from typer.testing import CliRunner

from medinpaint.checkpoint import read_metadata
from medinpaint.cli import app

from conftest import write_dmiai

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_session.sh"
MACHINE_PACKAGES = ROOT / "benchmarks" / "gpu_machine_packages.txt"
TINY_CT = "--batch-size 4 --base-channels 8 --depth 3 --blocks 1 --val-every 2"
TINY_SYNTH = "--batch-size 4 --base-channels 8"

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(shutil.which("timeout") is None or shutil.which("bash") is None, reason="needs bash and coreutils")]


def packed_phantoms(folder: Path, size: int) -> Path:
    """Six training and two validation patients of phantoms, packed with `medinpaint pack` as for the GPU."""
    write_dmiai(folder / "phantoms", [*range(6), 450, 451], per_patient=2, size=size)
    result = CliRunner().invoke(app, ["pack", "-i", str(folder / "phantoms"), "-o", str(folder / "packed"), "--validation-cases", "64"])
    assert result.exit_code == 0, result.output
    return folder / "packed"


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()  # PEP 503


@functools.cache
def missing_on_gpu_machine() -> dict[str, tuple[str, ...]]:
    """Every distribution pyproject.toml asks for (dependencies and extras) that the GPU machine's image lacks,
    with the top-level modules it provides here."""
    there = {normalised(line) for line in MACHINE_PACKAGES.read_text().splitlines() if line and not line.startswith("#")}
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = project["dependencies"] + [r for extra in project["optional-dependencies"].values() for r in extra]
    names = {normalised(re.match(r"[A-Za-z0-9][A-Za-z0-9._-]*", r).group()) for r in wanted}
    provides: dict[str, list[str]] = {}
    for module, dists in importlib.metadata.packages_distributions().items():
        for dist in dists:
            provides.setdefault(normalised(dist), []).append(module)
    return {name: tuple(sorted(provides.get(name, []))) for name in sorted(names - there)}


def gpu_machine_python(folder: Path) -> Path:
    """A folder for PYTHONPATH whose sitecustomize makes the modules of `missing_on_gpu_machine` unfindable, as on
    the GPU machine, so that the rehearsal fails where a GPU job would import one of them. With
    DEAF_TO_SIGTERM_ONCE=PATH, the first Python process to start (the one that creates PATH) also ignores SIGTERM,
    as a run stuck in its step would, so that the stop by SIGKILL and the salvage after it are rehearsed."""
    hidden = {m for modules in missing_on_gpu_machine().values() for m in modules}
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "sitecustomize.py").write_text(f"""import importlib.machinery
import os
import signal

HIDDEN = {hidden!r}
_find_spec = importlib.machinery.PathFinder.find_spec.__func__


def find_spec(cls, name, path=None, target=None):
    return None if name.partition(".")[0] in HIDDEN else _find_spec(cls, name, path, target)


importlib.machinery.PathFinder.find_spec = classmethod(find_spec)


def deaf_to_sigterm(marker):
    try:
        open(marker, "x").close()
    except FileExistsError:
        return
    install = signal.signal
    install(signal.SIGTERM, signal.SIG_IGN)
    signal.signal = lambda signum, handler: signal.SIG_IGN if signum == signal.SIGTERM else install(signum, handler)


if os.environ.get("DEAF_TO_SIGTERM_ONCE"):
    deaf_to_sigterm(os.environ["DEAF_TO_SIGTERM_ONCE"])
""")
    return folder


def base_env(tmp_path: Path, packed: Path, **knobs: str) -> dict[str, str]:
    inherited = [os.environ["PYTHONPATH"]] if os.environ.get("PYTHONPATH") else []
    path = os.pathsep.join([str(gpu_machine_python(tmp_path / "gpu-machine-python")), *inherited])
    return {**os.environ, "PYTHONPATH": path, "OMP_NUM_THREADS": "1", "DEVICE": "cpu", "PYTHON": sys.executable, "DATA": str(packed),
            "DATA_SMALL": str(tmp_path / "packed-64"), "RUNS": str(tmp_path / "runs"), "DEADLINE_S": "200",
            "DIFF_SMALL_FLAGS": "--blocks 1", "DIFF_LARGE_FLAGS": "--blocks 1", "SYNTH_FLAGS": f"--steps 2 {TINY_SYNTH}", **knobs}


def run_stage(stage: str, env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), stage], cwd=ROOT, env=env, capture_output=True, text=True, timeout=240)


def weights_info(path: Path) -> tuple[int, set[str]]:
    """(training steps in the metadata, dtypes of the floating-point tensors)."""
    steps = read_metadata(path).training.steps
    with safe_open(str(path), framework="pt") as f:
        dtypes = {str(f.get_tensor(k).dtype) for k in f.keys() if f.get_tensor(k).is_floating_point()}
    return steps, dtypes


def archived(path: Path) -> set[str]:
    with tarfile.open(path) as tar:
        return set(tar.getnames())


def test_the_rehearsal_hides_what_the_gpu_machine_lacks(tmp_path: Path) -> None:
    missing = missing_on_gpu_machine()
    assert "numpy" not in missing and "torch" not in missing  # both are on the machine
    modules = [m for ms in missing.values() for m in ms]
    assert modules, missing  # the dependencies the machine lacks are installed here, so there is something to hide
    env = {**os.environ, "PYTHONPATH": str(gpu_machine_python(tmp_path / "py"))}
    probe = "import importlib.util, sys; print([m for m in sys.argv[1:] if importlib.util.find_spec(m) is not None])"
    seen = subprocess.run([sys.executable, "-c", probe, "numpy", *modules], env=env, capture_output=True, text=True, check=True)
    assert seen.stdout.strip() == "['numpy']", seen.stdout + seen.stderr


def test_train_then_extend_returns_half_precision_weights_and_one_archive_and_resumes(tmp_path: Path) -> None:
    packed = packed_phantoms(tmp_path, 64)
    env = base_env(tmp_path, packed, SIZE_LARGE="0")  # the 64x64 phantoms have no 256x256 job
    done = run_stage("train", {**env, "OUT": str(tmp_path / "out-train"), "CT_FLAGS": f"--steps 3 {TINY_CT}",
                               "SEG_FLAGS": "--steps 2 --batch-size 2 --base-channels 8 --depth 3"})
    assert done.returncode == 0, done.stdout + done.stderr

    out = tmp_path / "out-train"
    weights = {"ct-unet.safetensors", "ct-segmenter.safetensors", "synth-diffusion-64.safetensors", "synth-vae-64.safetensors",
               "synth-encoder-64.safetensors"}
    assert {p.name for p in out.iterdir()} == weights | {"logs.tar.gz"}
    for name in weights:
        steps, dtypes = weights_info(out / name)
        assert dtypes and dtypes <= {"torch.float16", "torch.bfloat16"}, (name, dtypes)
    first_steps, dtypes = weights_info(out / "ct-unet.safetensors")
    assert first_steps == 3 and dtypes == {"torch.float16"}
    names = archived(out / "logs.tar.gz")
    for run in ("ct-unet", "synth-diffusion-64", "synth-vae-64", "synth-encoder-64"):
        assert f"./{run}/log.csv" in names, sorted(names)
    assert {"./logs/train/summary.md", "./logs/train/summary.json", "./logs/train/session.log", "./logs/train/ct.log",
            "./logs/train/derive-64.log"} <= names
    assert not any(n.endswith((".safetensors", ".pt")) for n in names)
    assert "images_per_s_median" in done.stdout  # the summary table is printed

    done = run_stage("extend", {**env, "OUT": str(tmp_path / "out-extend"), "CT_FLAGS": f"--steps 6 {TINY_CT}",
                                "REPORT_N": "6", "UTILITY_STEPS": "0", "REPORT_BATCH": "6", "REPORT_FLAGS": "--steps 2",
                                "SPEED_N": "2", "SPEED_RUNS": "ddim:2 vae", "SAMPLER_N": "6", "SAMPLER_RUNS": "ddim:2 dpm++:2"})
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out-extend"
    assert {p.name for p in out.iterdir()} == {"ct-unet.safetensors", "logs.tar.gz"}
    steps, dtypes = weights_info(out / "ct-unet.safetensors")
    assert steps == 6 > first_steps and dtypes == {"torch.float16"}  # resumed from last.pt, not restarted
    assert {"./synth-report-64/summary.json", "./logs/extend/speed.jsonl", "./logs/extend/summary.md",
            "./logs/train/summary.md"} <= archived(out / "logs.tar.gz")
    speed = (tmp_path / "runs" / "logs" / "extend" / "speed.jsonl").read_text().splitlines()
    assert len(speed) == 2 and "report: held-out real" in done.stdout  # ddim:2 and vae; the report's headline
    samplers = (tmp_path / "runs" / "logs" / "extend" / "samplers.jsonl").read_text().splitlines()
    assert [json.loads(x)["run"] for x in samplers] == ["ddim:2", "dpm++:2"] and "samplers: {'run': 'dpm++:2'" in done.stdout

    cold = run_stage("extend", {**env, "RUNS": str(tmp_path / "fresh-machine"), "OUT": str(tmp_path / "out-cold")})
    assert cold.returncode == 3 and "fresh one" in cold.stdout


def test_a_training_job_still_running_at_the_deadline_stops_cleanly_or_is_killed_and_salvaged(tmp_path: Path) -> None:
    """At the deadline a training run gets SIGTERM: it ends its step and exports its own weights (no salvage run),
    which come back in $OUT; the job counts as interrupted. A run that ignores SIGTERM (stuck) is killed
    KILL_AFTER_S later without exporting, and a second process resumes its last.pt and exports."""
    packed = packed_phantoms(tmp_path, 64)
    env = base_env(tmp_path, packed, SIZE_LARGE="0", JOBS="ct", CT_FLAGS=f"--steps 1000000 {TINY_CT}")
    done = run_stage("train", {**env, "DEADLINE_S": "15", "OUT": str(tmp_path / "out")})
    assert done.returncode == 1 and "failed or interrupted: ct" in done.stdout, done.stdout + done.stderr
    assert "salvage" not in done.stdout
    steps, dtypes = weights_info(tmp_path / "out" / "ct-unet.safetensors")
    run = tmp_path / "runs" / "ct-unet"
    rows = (run / "log.csv").read_text().splitlines()
    assert steps > 0 and steps == int(rows[-1].split(",")[0]) and dtypes == {"torch.float16"}
    assert f"SIGTERM at step {steps}" in (tmp_path / "runs" / "logs" / "train" / "ct.log").read_text()

    # The next call, on the same machine: this run is deaf to SIGTERM. Its export is made an hour old, as after a
    # call whose run has since written its periodic last.pt (every two minutes; this one runs seconds).
    an_hour_ago = os.stat(run / "model.safetensors").st_mtime - 3600
    os.utime(run / "model.safetensors", (an_hour_ago, an_hour_ago))
    done = run_stage("extend", {**env, "DEADLINE_S": "15", "KILL_AFTER_S": "2", "OUT": str(tmp_path / "out-killed"),
                                "DEAF_TO_SIGTERM_ONCE": str(tmp_path / "deaf-marker")})
    assert done.returncode == 1 and "failed or interrupted: ct" in done.stdout, done.stdout + done.stderr
    jobs = (tmp_path / "runs" / "logs" / "extend" / "jobs.tsv").read_text().split()
    assert jobs[0] == "ct" and jobs[3] == "137"  # killed
    salvage = re.search(r"salvage ct: export its weights from last.pt \(--steps (\d+),", done.stdout)
    assert salvage and "salvaged ct" in done.stdout, done.stdout
    salvaged, dtypes = weights_info(tmp_path / "out-killed" / "ct-unet.safetensors")
    assert steps < salvaged <= int(salvage.group(1)) and dtypes == {"torch.float16"}  # resumed, trained on, exported


def test_solo_run_and_large_generator(tmp_path: Path) -> None:
    """SOLO=1 runs the CT recipe alone first and the summary compares; the large generator (256x256 on the GPU,
    here 128x128 phantoms) trains on the pack as it is and comes back under its own name."""
    packed = packed_phantoms(tmp_path, 128)
    env = base_env(tmp_path, packed, SIZE_LARGE="128", JOBS="ct large", SOLO="1", SOLO_MINUTES="1",
                   OUT=str(tmp_path / "out"), CT_FLAGS=f"--steps 4 {TINY_CT}")
    done = run_stage("train", env)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    assert {p.name for p in out.iterdir()} == {"ct-unet.safetensors", "synth-diffusion-128.safetensors", "logs.tar.gz"}
    assert weights_info(out / "synth-diffusion-128.safetensors") == (2, {"torch.bfloat16"})
    assert read_metadata(out / "synth-diffusion-128.safetensors").preprocessing.size == 128
    names = archived(out / "logs.tar.gz")
    assert {"./ct-solo/log.csv", "./ct-unet/log.csv", "./synth-diffusion-128/log.csv"} <= names
    assert "solo vs concurrent: ct_solo_images_per_s" in done.stdout
    # extend on the same machine: issue 12's study at the large size, with the large generator as its reference
    study = run_stage("extend", {**env, "JOBS": "study", "OUT": str(tmp_path / "out-study"), "STUDY_NS": "1",
                                 "STUDY_SEEDS": "1", "STUDY_SEG_STEPS": "2", "STUDY_GEN_STEPS": "2",
                                 "STUDY_FLAGS": "--seg-batch-size 2 --seg-base-channels 8 --gen-base-channels 8"})
    assert study.returncode == 0, study.stdout + study.stderr
    assert "./seg-study-128/results.csv" in archived(tmp_path / "out-study" / "logs.tar.gz")
    assert "study: {'arm': 'real+all', 'ratio': 4, 'n': '1'" in study.stdout  # the reference arm ran too


def test_extend_runs_the_architecture_comparison_and_the_pathology_protocol_at_the_large_size(tmp_path: Path) -> None:
    """Issues 13 and 16 at the large size (here 128x128 phantoms): their tables come back in the log archive and
    are printed; the simulated lesion folders stay on the machine."""
    packed = packed_phantoms(tmp_path, 128)
    env = base_env(tmp_path, packed, SIZE_LARGE="128", JOBS="compare lesions", OUT=str(tmp_path / "out"),
                   COMPARE_FLAGS="--steps 2 --architectures unet,diffusion --base-channels 8",
                   LESION_PATIENTS="4", LESION_HEALTHY="2", LESION_SEEDS="1",
                   LESION_FLAGS="--seg-steps 2 --painter-steps 2 --strategy spheres --painter classical")
    done = run_stage("extend", env)
    assert done.returncode == 0, done.stdout + done.stderr
    names = archived(tmp_path / "out" / "logs.tar.gz")
    assert {"./compare-128/results.csv", "./lesion-protocol-128/results.csv"} <= names
    assert not any(n.startswith("./lesion-bench-128") for n in names)
    assert "| diffusion | v-mse |" in done.stdout and "| spheres+classical |" in done.stdout
