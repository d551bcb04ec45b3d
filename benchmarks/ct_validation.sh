#!/usr/bin/env bash
# Score a CT inpainting checkpoint exactly as a user would: `medinpaint predict` + `medinpaint evaluate` on the
# 500 slices of validation patients 450-499, on CPU, then the baselines table beside it.
#   bash benchmarks/ct_validation.sh [DATA=../shared/data/dmiai-ct] [WEIGHTS=shipped] [OUT=runs/ct-validation]
set -euo pipefail
data=$(realpath "${1:-../shared/data/dmiai-ct}")
weights=${2:-}
out=${3:-runs/ct-validation}
val=$(mktemp -d)
trap 'rm -rf "$val"' EXIT
for kind in corrupted mask ct tissue vertebrae; do  # links, not copies: patients 450-499 only
  mkdir -p "$val/$kind"
  ln -s "$data/$kind/${kind}"_4[5-9][0-9]_* "$val/$kind/"
done
mi=.venv/bin/medinpaint
$mi predict -i "$val" -o "$out/predictions" ${weights:+--weights "$weights"} --batch-size 8 --overwrite --no-progress
$mi evaluate --pred "$out/predictions" --data "$val" -o "$out/report" --overwrite
$mi benchmark --data "$val" ${weights:+--weights "$weights"} --flips -o "$out/benchmark.json" --no-progress
