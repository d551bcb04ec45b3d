#!/usr/bin/env bash
# What a GPU call carries, in bytes: the repository's files that travel (tracked, and untracked but not ignored)
# plus the carried folders (default: packed/gpu). Fails (exit 1) when the total is over the limit of 64 MiB less
# a margin (default 1 MiB), so a call is never refused for size.
#   bash benchmarks/travel_size.sh                     # packed/gpu
#   MARGIN=0 bash benchmarks/travel_size.sh packed/gpu packed/other
set -euo pipefail
cd "$(git rev-parse --show-toplevel)"
limit=$((64 * 1024 * 1024))
margin=${MARGIN:-$((1024 * 1024))}
[ $# -gt 0 ] || set -- packed/gpu
# Apparent sizes, summed here (du -c prints one total per xargs batch); tracked files deleted from the work
# tree do not travel, so only existing files count.
tree=$(git ls-files -co --exclude-standard -z | { xargs -0 -r stat -c %s -- 2>/dev/null || true; } | awk '{s += $1} END {print s + 0}')
printf '%-32s %12s bytes\n' "repository (travels always)" "$tree"
total=$tree
for path in "$@"; do
  [ -e "$path" ] || { echo "error: $path does not exist" >&2; exit 2; }
  size=$(du -sb -- "$path" | cut -f1)
  printf '%-32s %12s bytes\n' "$path (carry)" "$size"
  total=$((total + size))
done
printf '%-32s %12s bytes (%.2f MiB)\n' "total" "$total" "$(awk -v t="$total" 'BEGIN {print t / 1048576}')"
printf '%-32s %12s bytes (64 MiB), margin asked %s, left %s\n' "limit" "$limit" "$margin" "$((limit - total))"
if [ "$total" -gt $((limit - margin)) ]; then
  echo "error: over the limit less the margin: carry less (benchmarks/gpu_pack.py fits the pack to the room left)" >&2
  exit 1
fi
