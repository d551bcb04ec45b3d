#!/usr/bin/env bash
# The synthesis recipe for one H100/H200: the shipped 64x64 and 256x256 diffusion checkpoints, the VAE baseline,
# the report's encoder, the report and the speed figures. Run ON the GPU machine from the repository root.
#
# Here, first (git-ignored folders, each under the 64 MiB carry with the repository):
#   .venv/bin/python benchmarks/synth_pack.py --data ../shared/data/dmiai-ct --size 64 -o packed/synth-64 --validation-cases 500
#   .venv/bin/python benchmarks/synth_pack.py --data ../shared/data/dmiai-ct --size 256 -o packed/synth-256
# Then, per size, calls of at most 10 minutes, back to back (runs/ survives between calls only while the machine
# stays warm, 30 s after a call; a fresh machine starts over):
#   run(command="bash benchmarks/gpu_synthesis.sh 64 diffusion 8", carry=["packed/synth-64"], timeout_s=600)
#   run(command="bash benchmarks/gpu_synthesis.sh 64 baselines", carry=["packed/synth-64"], timeout_s=600)
#   run(command="bash benchmarks/gpu_synthesis.sh 64 report", carry=["packed/synth-64"], timeout_s=600)
# and the same for 256 (`diffusion 8`, then `diffusion 16` to resume to 16 minutes in total if time allows).
# MINUTES is the training budget in total across resumes. What comes back in $OUT:
#   diffusion: synth-diffusion-SIZE.safetensors (bf16: copy it to src/medinpaint/weights/), diffusion-log.csv, stage.log
#   baselines: vae-log.csv, encoder-log.csv, stage.log
#   report:    summary.json, nearest.csv, samples.png, histograms.png, closest_pairs.png, speed.jsonl, stage.log
# Environment knobs (defaults for the GPU): DEVICE=cuda, DATA, N (report samples), UTILITY_STEPS, SPEED_N,
# VAE_MINUTES=3, ENCODER_MINUTES=1.5, TRAIN_FLAGS (extra `synth train` flags). A CPU rehearsal of the whole recipe
# on phantoms: DEVICE=cpu DATA=DIR N=8 UTILITY_STEPS=2 SPEED_N=2 VAE_MINUTES=0.05 ENCODER_MINUTES=0.05
# TRAIN_FLAGS="--base-channels 8 --blocks 1" bash benchmarks/gpu_synthesis.sh 64 diffusion 0.05 (then baselines, report).
set -euo pipefail
size=${1:?usage: gpu_synthesis.sh SIZE diffusion MINUTES | baselines | report}
stage=${2:?usage: gpu_synthesis.sh SIZE diffusion MINUTES | baselines | report}
export PYTHONPATH=src PYTHONUNBUFFERED=1
device=${DEVICE:-cuda}
data=${DATA:-packed/synth-$size}
runs=runs/synth-$size
out=${OUT:-$runs-out}
mkdir -p "$out" "$runs"
compile=$([ "$device" = cuda ] && echo --compile || true)
if [ "$size" = 64 ]; then batch=256; n=${N:-2000}; utility=${UTILITY_STEPS:-3000}; speed_n=${SPEED_N:-4096}
else batch=48; n=${N:-1000}; utility=${UTILITY_STEPS:-1500}; speed_n=${SPEED_N:-1024}; fi
synth() { python3 -m medinpaint synth "$@" --device "$device" --no-progress; }
train() {  # MODEL MINUTES BATCH [flags]: train or resume runs/synth-SIZE-MODEL
  synth train --model "$1" --size "$size" --data "$data" --output "$runs/$1" --minutes "$2" --batch-size "$3" \
    $compile ${TRAIN_FLAGS:-} "${@:4}"
}
{
  [ "$device" = cuda ] && nvidia-smi --query-gpu=name,memory.total --format=csv,noheader
  case "$stage" in
    diffusion)
      train diffusion "${3:?diffusion needs MINUTES}" "$batch" --lr 5e-4 --weights-dtype bfloat16
      cp "$runs/diffusion/model.safetensors" "$out/synth-diffusion-$size.safetensors"
      cp "$runs/diffusion/log.csv" "$out/diffusion-log.csv" ;;
    baselines)
      train vae "${VAE_MINUTES:-3}" "$batch" --weights-dtype bfloat16
      train encoder "${ENCODER_MINUTES:-1.5}" 256
      cp "$runs/vae/log.csv" "$out/vae-log.csv"
      cp "$runs/encoder/log.csv" "$out/encoder-log.csv" ;;
    report)
      synth report --data "$data" --weights "$runs/diffusion/model.safetensors" --weights "$runs/vae/model.safetensors" \
        --encoder "$runs/encoder/model.safetensors" -n "$n" --utility-steps "$utility" --batch-size 512 \
        -o "$runs/report" --overwrite
      cp "$runs/report/summary.json" "$runs/report/nearest.csv" "$runs/report/"*.png "$out/"
      rm -f "$out/speed.jsonl"
      for flags in "" $compile; do
        python3 benchmarks/synth_speed.py --size "$size" --device "$device" --weights "$runs/diffusion/model.safetensors" \
          --n "$speed_n" --batch-size "$speed_n" --runs ddim:10 ddim:25 ddim:50 ddpm:100 vae $flags --json "$out/speed.jsonl"
      done
      if [ "$device" = cuda ]; then  # the full DDPM chain: minutes per sample on a CPU
        python3 benchmarks/synth_speed.py --size "$size" --device "$device" --weights "$runs/diffusion/model.safetensors" \
          --n $((speed_n / 8)) --batch-size $((speed_n / 8)) --runs ddpm:1000 --json "$out/speed.jsonl"
      fi ;;
    *) echo "unknown stage $stage (diffusion, baselines, report)" >&2; exit 2 ;;
  esac
} 2>&1 | tee -a "$out/stage.log"
