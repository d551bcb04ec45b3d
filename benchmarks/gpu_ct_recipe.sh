#!/usr/bin/env bash
# The CT inpainting recipe for one H100/H200, run ON the GPU machine from the repository root (device tool).
#
# Here, first:   .venv/bin/medinpaint pack -i ../shared/data/dmiai-ct -o packed/gpu-train --validation-cases 64
#                (patients 0-449 and 64 validation slices, LZMA shards: ~61 MB, under the 64 MiB carry)
# Then one call: run(command="bash benchmarks/gpu_ct_recipe.sh ct-unet 8.5", carry=["packed/gpu-train"], timeout_s=600)
# Extra arguments after the minutes go to `medinpaint train` (e.g. --base-channels 48 --blocks 2 for a variant).
# Back in $OUT: model.safetensors (float16), log.csv, progress.png, train.log. Score it here, on CPU, on all
# 500 validation slices:  .venv/bin/medinpaint benchmark --data ../shared/data/dmiai-ct --weights OUT/model.safetensors --flips
#
# The GPU machine has torch, accelerate, safetensors, typer, rich, tqdm, matplotlib, scipy, opencv and pillow,
# which is all the training path imports, so nothing needs to be carried but the data.
set -euo pipefail
run=${1:?usage: gpu_ct_recipe.sh RUN_NAME MINUTES [train flags]}
minutes=${2:?usage: gpu_ct_recipe.sh RUN_NAME MINUTES [train flags]}
shift 2
export PYTHONPATH=src PYTHONUNBUFFERED=1
out=${OUT:-runs/$run-out}
mkdir -p "$out"
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$out/device.txt"
python3 -m medinpaint train --data packed/gpu-train --output "runs/$run" --minutes "$minutes" --device cuda \
  --compile --batch-size 64 --lr 2e-3 --base-channels 32 --depth 4 --blocks 2 --val-every 500 \
  --weights-dtype float16 --no-progress "$@" 2>&1 | tee "$out/train.log"
cp "runs/$run/model.safetensors" "runs/$run/log.csv" "runs/$run/progress.png" "$out/"
