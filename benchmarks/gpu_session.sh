#!/usr/bin/env bash
# Every queued GPU job in one 10-minute device call, run ON the GPU machine from the repository root: the jobs
# share the one GPU as concurrent processes, each with its own log, sized to end inside the call.
#
# Here, once (packed/ is git-ignored; the repository and the pack must stay under the 64 MiB a call carries):
#   .venv/bin/python benchmarks/gpu_pack.py --data ../shared/data/dmiai-ct -o packed/gpu
#       (`medinpaint pack --validation-cases 64` at LZMA 9e, with as many training patients as fit beside the
#       repository; run it again whenever the repository grows, e.g. by a shipped checkpoint)
#   bash benchmarks/travel_size.sh                          # fails if over 64 MiB less a 1 MiB margin
# Then the calls: `train` first, as one call; it returns every shipped checkpoint on its own.
#   run(command="bash benchmarks/gpu_session.sh train",  carry=["packed/gpu"], timeout_s=600)
# The call may run under less than 600 s when less device time is left once the machine has started (a failed start
# costs 1-2 minutes): with status' budget_left_s under 780, start the command with
# DEADLINE_S=$((budget_left_s - 240)): the jobs still running then are stopped and export their weights, as at the
# usual deadline, so the weights are in $OUT before the call's own limit.
# A session lent 15 minutes of device time (the rule since 2026-11-29: the machine's start, a minute or more,
# counts, and none starts with under 4 minutes left) has room for that one call only: score the weights and run
# the 64x64 report on CPU here. Only where status still shows >= 11 minutes left, straight after `train` (runs/
# lives on the GPU machine, which stays warm only 30 s; `extend` on a fresh machine stops at once with exit 3):
#   run(command="bash benchmarks/gpu_session.sh extend", carry=["packed/gpu"], timeout_s=600)
#
# train, all jobs at once (in priority order, which is their CPU niceness: 0, 5, 10):
#   ct             medinpaint train on DATA: base 32, depth 4, 2 blocks, batch 64, lr 2e-3, --compile, bf16,
#                  float16 weights (the recipe of issue 4)                                                CT_MINUTES=8
#   seg            medinpaint segment train on DATA (body composition at 256x256, base 32), batch 32,
#                  float16 weights; the shipped segmenter's successor (issue 12: fat Dice >= 0.93)  SEG_MINUTES=6
#   diffusion-64   synth train --model diffusion --size 64, batch 256, lr 5e-4                DIFF_SMALL_MINUTES=7.5
#   vae-64         synth train --model vae --size 64, batch 256 (the baseline)                        VAE_MINUTES=3
#   encoder-64     synth train --model encoder --size 64, batch 256 (the report's features)         ENC_MINUTES=1.5
#   diffusion-256  synth train --model diffusion --size 256, batch 48, lr 5e-4, on DATA as is  DIFF_LARGE_MINUTES=8
#   The 64x64 jobs train on DATA_SMALL, derived on the machine from DATA (benchmarks/synth_pack.py, ~0.5 min)
#   while the CT and 256x256 jobs already run; it is kept there for extend.
# extend: the CT run resumed to CT_TOTAL_MINUTES=14 in total and diffusion-256 to DIFF_LARGE_TOTAL_MINUTES=14
#   (0: not resumed), beside `synth report` on the 64x64 generators (REPORT_N=2000, UTILITY_STEPS=2000,
#   REPORT_BATCH=512) and benchmarks/sampler_quality.py (Fréchet distance per sampler and step count, issue 14:
#   SAMPLER_N=2000, SAMPLER_RUNS="ddim:10 ddim:25 ddim:50 dpm++:5 dpm++:10 dpm++:20", samplers.jsonl);
#   and issue 12's study at SIZE_LARGE (`segment study`, own-VAE arms, and real+all with diffusion-256 as the
#   reference: STUDY_NS="1 5 25 all", STUDY_SEEDS=3, STUDY_SEG_STEPS=300, STUDY_GEN_STEPS=400, STUDY_FLAGS; finished
#   (n, seed) blocks are kept in runs/.seg-study-256.partial/rows.jsonl if the deadline interrupts it, and a later
#   extend resumes them); issue 13's architecture comparison at SIZE_LARGE (`compare`, every architecture, brush
#   masks, COMPARE_SEEDS=1, COMPARE_MINUTES=0.5 a run, base 32, COMPARE_FLAGS); issue 16's pathology protocol at
#   SIZE_LARGE (`lesions simulate` on DATA, LESION_PATIENTS=60 with lesions of radius 10..24 px and 200 healthy,
#   then `lesions protocol`: every strategy and painter, LESION_SEEDS=2, LESION_SEG_STEPS=400, LESION_FLAGS);
#   then benchmarks/synth_speed.py alone on the GPU in the time left (SPEED_N=1024,
#   SPEED_RUNS="ddim:10 ddim:25 ddim:50 dpm++:10 ddpm:100 vae"; uncompiled, compiled, ddpm:1000 with SPEED_N/8).
# SOLO=1 (either stage) first runs the CT recipe alone for SOLO_MINUTES=1.5 in a fresh run (ct-solo), so its
#   images/s alone and beside the other jobs compare in the summary; the default budgets shrink to make room.
# Minutes are training time in total across calls (compilation included, validation not). Every job still
# running at DEADLINE_S=560 is stopped: a training run by SIGTERM (the engine ends the step, writes last.pt and
# exports its weights itself, in seconds on the GPU; a run still alive KILL_AFTER_S=10 later is killed and its
# weights are exported from last.pt by HARD_S=595), any other job by SIGINT; the GPU call's limit is 600 s.
#
# Back in $OUT (checked: at most 8 files of at most 16 MiB), each copied as soon as its job ends: ct-unet.safetensors (float16),
# synth-{diffusion,vae,encoder}-64.safetensors and synth-diffusion-256.safetensors (bfloat16; extend returns
# what it trained: ct-unet and synth-diffusion-256), and logs.tar.gz: every job's console log, log.csv,
# progress.png and config.json, the report (summary.json, nearest.csv, figures), speed.jsonl, nvidia-smi samples
# (gpu.csv), and summary.md / summary.json from benchmarks/session_summary.py (images/s per job from log.csv,
# solo against concurrent, GPU utilisation), which is also printed.
#
# Other knobs (environment): JOBS="ct seg small large report samplers study compare lesions speed" (small: the three 64x64 jobs; report and speed
# belong to extend), DEVICE=cuda, PYTHON=python3, DATA=packed/gpu, SIZE_SMALL=64, SIZE_LARGE=256 (0: none),
# DATA_SMALL=packed/gpu-SIZE_SMALL, RUNS=runs/gpu-session, OUT=runs/gpu-session-out, COMPILE=1 (0 on a CPU),
# batches CT_BATCH=64 DIFF_SMALL_BATCH=256 VAE_BATCH=256 ENC_BATCH=256 DIFF_LARGE_BATCH=48, and extra flags
# appended to a job's command, where the last of a repeated flag wins (widths, --steps budgets): CT_FLAGS
# DIFF_SMALL_FLAGS VAE_FLAGS ENC_FLAGS DIFF_LARGE_FLAGS SYNTH_FLAGS (every synth job) REPORT_FLAGS SPEED_FLAGS.
# tests/test_gpu_session.py rehearses both stages on CPU: DEVICE=cpu, phantoms, tiny networks, --steps budgets, and
# the Python packages the GPU machine lacks (benchmarks/gpu_machine_packages.txt: nothing installs there) hidden.
set -uo pipefail  # not -e: a failed job must not stop the others, the copying or the summary
stage=${1:?usage: gpu_session.sh train|extend}
t0=$(date +%s)
export PYTHONPATH=src${PYTHONPATH:+:$PYTHONPATH} PYTHONUNBUFFERED=1
# A torch.compile that fails (inductor, Triton, ptxas: never run before the call) falls back to eager instead of
# ending every job at its first step; seven processes share 16 cores (each is GPU-bound: 2 threads, 4 compile workers).
export TORCHDYNAMO_SUPPRESS_ERRORS=${TORCHDYNAMO_SUPPRESS_ERRORS:-1} OMP_NUM_THREADS=${OMP_NUM_THREADS:-2}
export TORCHINDUCTOR_COMPILE_THREADS=${TORCHINDUCTOR_COMPILE_THREADS:-4}
py=${PYTHON:-python3}
device=${DEVICE:-cuda}
data=${DATA:-packed/gpu}
small=${SIZE_SMALL:-64}
large=${SIZE_LARGE:-256}
data_small=${DATA_SMALL:-packed/gpu-$small}
runs=${RUNS:-runs/gpu-session}
out=${OUT:-runs/gpu-session-out}
deadline=${DEADLINE_S:-560}
hard=${HARD_S:-$((deadline + 35))}  # the salvage of interrupted runs ends by then (the call: 600 s)
kill_after=${KILL_AFTER_S:-10}  # a job still running this long after its stop signal is killed
solo=${SOLO:-0}
jobs=" ${JOBS:-ct seg small large report samplers study compare lesions speed} "
[ "$large" = 0 ] && jobs=${jobs/ large / }
has() { [[ $jobs == *" $1 "* ]]; }  # whether JOBS names this job
compile_default=$([ "$device" = cuda ] && echo 1 || echo 0)
compile=$([ "${COMPILE:-$compile_default}" = 1 ] && echo --compile || true)
logs=$runs/logs/$stage
ct_run=$runs/ct-unet seg_run=$runs/ct-segmenter
diff_small=$runs/synth-diffusion-$small vae_small=$runs/synth-vae-$small enc_small=$runs/synth-encoder-$small
diff_large=$runs/synth-diffusion-$large report=$runs/synth-report-$small study=$runs/seg-study-$large
compare=$runs/compare-$large lesion_bench=$runs/lesion-bench-$large lesion_report=$runs/lesion-protocol-$large
rm -rf "$logs"  # this call's logs only (a stage run twice on one machine)
mkdir -p "$logs" "$out"
: > "$logs/jobs.tsv"
exec 3>&1 4>&2 > >(tee -a "$logs/session.log") 2>&1
tee_pid=$!

say() { printf '[%4ds] %s\n' $(($(date +%s) - t0)) "$*"; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN {v = a - b; print (v > 0.1 ? v : 0.1)}'; }  # a budget less b minutes
left() { echo $((deadline - ($(date +%s) - t0))); }
rows() { [ -f "$1/log.csv" ] && echo $(($(wc -l < "$1/log.csv") - 1)) || echo 0; }  # data rows of a run's log.csv

shrink=0
[ "$solo" = 1 ] && shrink=$(awk -v m="${SOLO_MINUTES:-1.5}" 'BEGIN {print m + 0.5}')
budget() { minus "$1" "$shrink"; }  # a default budget, less the solo run's time when there is one

# launch [-n NICE] [-r RUN_FOLDER [-o SHIPPED_NAME]] NAME CMD...: CMD (a program, not a shell function) in the background at CPU
# niceness NICE (the priority order: the CT job 0, the 64x64 jobs 5, the 256x256 job 10), its output in
# $logs/NAME.log, stopped at the deadline; name, start, end and exit status go to $logs/jobs.tsv; its pid is added
# to `pids` for wait_jobs. With -r (one training run) the stop is SIGTERM: the engine finishes its step, writes
# last.pt and exports model.safetensors, in the same process. Should the export not have happened (the job killed
# KILL_AFTER_S later), the job is salvaged when at least 20 s are left before HARD_S: CMD again with --steps at its
# last logged step, which resumes from last.pt (the periodic one: up to two minutes older) and exports on reaching
# that step or on SIGTERM 5 s before HARD_S, whichever comes first. Other jobs (several trainings in a row: a
# study, a comparison) get SIGINT, which ends them whatever they are in. With -o, the run's weights are copied into
# $OUT as SHIPPED_NAME as soon as the job ends: a call killed before the end still brings back what had finished.
ship() {  # RUN_FOLDER NAME: its weights into $OUT as NAME
  if [ -f "$1/model.safetensors" ]; then cp "$1/model.safetensors" "$out/$2"; else say "warning: no $1/model.safetensors"; fi
}
pids=()
exported() { [ "$1/model.safetensors" -nt "$1/last.pt" ]; }  # RUN_FOLDER: its weights written after its last.pt
launch() {
  local run="" niceness=0 name l stop=INT shipped=""
  if [ "$1" = -n ]; then niceness=$2; shift 2; fi
  if [ "$1" = -r ]; then run=$2 stop=TERM; shift 2; fi
  if [ "$1" = -o ]; then shipped=$2; shift 2; fi
  name=$1
  shift
  l=$(left)
  if [ "$l" -le 5 ]; then say "skip $name: past the deadline"; printf '%s\t0\t0\t124\n' "$name" >> "$logs/jobs.tsv"; return; fi
  say "start $name: $*"
  (
    start=$(date +%s)
    nice -n "$niceness" timeout -s "$stop" -k "$kill_after" "$l" "$@" > "$logs/$name.log" 2>&1 3>&- 4>&-
    rc=$?
    if { [ "$rc" = 124 ] || [ "$rc" = 137 ]; } && [ -n "$run" ] && [ -f "$run/last.pt" ] && ! exported "$run"; then
      step=$(awk -F, 'NR > 1 {s = $1} END {print s}' "$run/log.csv" 2>/dev/null)
      t=$((hard - ($(date +%s) - t0) - 5))  # its own kill comes 5 s after t
      if [ -n "$step" ] && [ "$t" -ge 15 ]; then
        say "salvage $name: export its weights from last.pt (--steps $step, at most $t s)"
        nice -n "$niceness" timeout -s TERM -k 5 "$t" "$@" --steps "$step" >> "$logs/$name.log" 2>&1 3>&- 4>&-
        if exported "$run"; then say "salvaged $name"; else say "salvage $name failed"; fi
      fi
    fi
    [ -n "$shipped" ] && ship "$run" "$shipped"
    printf '%s\t%s\t%s\t%s\n' "$name" "$start" "$(date +%s)" "$rc" >> "$logs/jobs.tsv"
    say "end $name: exit $rc after $(($(date +%s) - start)) s"
  ) &
  pids+=($!)
}
wait_jobs() { [ ${#pids[@]} -eq 0 ] || wait "${pids[@]}"; pids=(); }  # not a bare `wait`: the GPU monitor runs on

# The commands, each into the array `cmd`.
ct_cmd() {  # RUN_FOLDER MINUTES: the CT recipe (base 32, depth 4, 2 blocks, batch 64, bf16, compiled)
  cmd=("$py" -m medinpaint train --data "$data" --output "$1" --minutes "$2" --device "$device" $compile
       --batch-size "${CT_BATCH:-64}" --lr 2e-3 --base-channels 32 --depth 4 --blocks 2 --val-every 500
       --weights-dtype float16 --no-progress ${CT_FLAGS:-})
}
seg_cmd() {  # RUN_FOLDER MINUTES: the body-composition segmenter on the CT slices and tissue maps of DATA
  cmd=("$py" -m medinpaint segment train --data "$data" --output "$1" --minutes "$2" --device "$device" $compile
       --batch-size "${SEG_BATCH:-32}" --base-channels 32 --val-every 500 --weights-dtype float16 --no-progress ${SEG_FLAGS:-})
}
synth_cmd() {  # MODEL SIZE DATA RUN_FOLDER MINUTES BATCH [flags]
  cmd=("$py" -m medinpaint synth train --model "$1" --size "$2" --data "$3" --output "$4" --minutes "$5" --batch-size "$6"
       --device "$device" $compile --weights-dtype bfloat16 --no-progress "${@:7}" ${SYNTH_FLAGS:-})
}
diffusion_large_cmd() {  # MINUTES
  synth_cmd diffusion "$large" "$data" "$diff_large" "$1" "${DIFF_LARGE_BATCH:-48}" --lr 5e-4 ${DIFF_LARGE_FLAGS:-}
}
derive_small() {  # the small generators' data, from DATA (kept on the machine between calls)
  if [ -f "$data_small/medinpaint-cache.json" ]; then say "reuse $data_small"; return 0; fi
  say "derive $data_small from $data"
  nice -n 5 "$py" benchmarks/synth_pack.py --data "$data" --size "$small" -o "$data_small" --max-mb 100000 --validation-cases 100000 \
    > "$logs/derive-$small.log" 2>&1 3>&- 4>&- || { say "deriving $data_small failed (see derive-$small.log)"; return 1; }
  say "$(tail -1 "$logs/derive-$small.log")"
}
small_jobs() {  # derive, then the three small jobs side by side (run in the background: its own `pids`)
  pids=()
  derive_small || return
  synth_cmd diffusion "$small" "$data_small" "$diff_small" "${DIFF_SMALL_MINUTES:-$(budget 7.5)}" "${DIFF_SMALL_BATCH:-256}" \
    --lr 5e-4 ${DIFF_SMALL_FLAGS:-}
  launch -n 5 -r "$diff_small" -o "synth-diffusion-$small.safetensors" "diffusion-$small" "${cmd[@]}"
  synth_cmd vae "$small" "$data_small" "$vae_small" "${VAE_MINUTES:-$(budget 3)}" "${VAE_BATCH:-256}" ${VAE_FLAGS:-}
  launch -n 5 -r "$vae_small" -o "synth-vae-$small.safetensors" "vae-$small" "${cmd[@]}"
  synth_cmd encoder "$small" "$data_small" "$enc_small" "${ENC_MINUTES:-$(budget 1.5)}" "${ENC_BATCH:-256}" ${ENC_FLAGS:-}
  launch -n 5 -r "$enc_small" -o "synth-encoder-$small.safetensors" "encoder-$small" "${cmd[@]}"
  wait_jobs
}

# --- what this call is, and on what
say "gpu_session.sh $stage on $device; data $data; runs in $runs; deadline ${deadline}s"
[ -f "$data/medinpaint-cache.json" ] || { say "error: $data is not a packed cache (medinpaint pack -o $data)"; exit 2; }
if [ "$stage" = extend ] && has ct && [ ! -f "$ct_run/last.pt" ]; then
  say "error: $ct_run/last.pt is missing: this machine is a fresh one (the warm one went back 30 s after the last"
  say "call), so there is nothing to extend; run the train stage again"
  exit 3
fi
monitor=
if [ "$device" = cuda ]; then
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$logs/device.txt"
  nvidia-smi --query-gpu=timestamp,utilization.gpu,memory.used --format=csv,noheader,nounits -l 2 \
    > "$logs/gpu.csv" 2>/dev/null 3>&- 4>&- &
  monitor=$!
else
  echo "cpu, $(getconf _NPROCESSORS_ONLN) cores" | tee "$logs/device.txt"
fi

jobs_summary=()  # NAME=RUN_FOLDER:ROWS_BEFORE for the summary
if [ "$solo" = 1 ]; then
  say "solo: the CT recipe alone for ${SOLO_MINUTES:-1.5} min"
  rm -rf "$runs/ct-solo"  # a fresh run every time
  ct_cmd "$runs/ct-solo" "${SOLO_MINUTES:-1.5}"
  launch -r "$runs/ct-solo" ct-solo "${cmd[@]}"
  wait_jobs
  jobs_summary+=("ct-solo=$runs/ct-solo:0")
fi

case "$stage" in
  train)
    if has ct; then
      jobs_summary+=("ct=$ct_run:$(rows "$ct_run")")
      ct_cmd "$ct_run" "${CT_MINUTES:-$(budget 8)}"
      launch -r "$ct_run" -o ct-unet.safetensors ct "${cmd[@]}"
    fi
    if has seg; then
      jobs_summary+=("seg=$seg_run:$(rows "$seg_run")")
      seg_cmd "$seg_run" "${SEG_MINUTES:-$(budget 6)}"
      launch -n 5 -r "$seg_run" -o ct-segmenter.safetensors seg "${cmd[@]}"
    fi
    if has large; then
      jobs_summary+=("diffusion-$large=$diff_large:$(rows "$diff_large")")
      diffusion_large_cmd "${DIFF_LARGE_MINUTES:-$(budget 8)}"
      launch -n 10 -r "$diff_large" -o "synth-diffusion-$large.safetensors" "diffusion-$large" "${cmd[@]}"
    fi
    if has small; then
      for pair in "diffusion-$small=$diff_small" "vae-$small=$vae_small" "encoder-$small=$enc_small"; do
        jobs_summary+=("$pair:$(rows "${pair#*=}")")
      done
      small_jobs &
      pids+=($!)
    fi
    wait_jobs
    ;;
  extend)
    if has ct; then
      jobs_summary+=("ct=$ct_run:$(rows "$ct_run")")
      ct_cmd "$ct_run" "${CT_TOTAL_MINUTES:-$(budget 14)}"
      launch -r "$ct_run" -o ct-unet.safetensors ct "${cmd[@]}"
    fi
    if has large && [ "${DIFF_LARGE_TOTAL_MINUTES:-14}" != 0 ] && [ -f "$diff_large/last.pt" ]; then
      jobs_summary+=("diffusion-$large=$diff_large:$(rows "$diff_large")")
      diffusion_large_cmd "${DIFF_LARGE_TOTAL_MINUTES:-$(budget 14)}"
      launch -n 10 -r "$diff_large" -o "synth-diffusion-$large.safetensors" "diffusion-$large" "${cmd[@]}"
    fi
    if has report && derive_small; then
      weights=()
      for w in "$diff_small" "$vae_small"; do [ -f "$w/model.safetensors" ] && weights+=(--weights "$w/model.safetensors"); done
      encoder=()
      [ -f "$enc_small/model.safetensors" ] && encoder=(--encoder "$enc_small/model.safetensors")
      if [ ${#weights[@]} -gt 0 ]; then
        launch -n 5 "report-$small" "$py" -m medinpaint synth report --data "$data_small" "${weights[@]}" "${encoder[@]}" \
          -n "${REPORT_N:-2000}" --utility-steps "${UTILITY_STEPS:-2000}" --batch-size "${REPORT_BATCH:-512}" \
          -o "$report" --overwrite --device "$device" --no-progress ${REPORT_FLAGS:-}
      else
        say "no $small x $small generator in $runs: no report"
      fi
    fi
    if has study && [ "$large" != 0 ]; then  # issue 12 at full size; rows survive an interruption (resumable)
      ref=() arms=(--arm real --arm real+own --arm synthetic)
      if [ -f "$diff_large/model.safetensors" ]; then ref=(--reference "$diff_large/model.safetensors"); arms+=(--arm real+all); fi
      ns=()
      for n in ${STUDY_NS:-1 5 25 all}; do ns+=(--n "$n"); done
      launch -n 10 "study-$large" "$py" -m medinpaint segment study --data "$data" --size "$large" -o "$study" --overwrite \
        --seeds "${STUDY_SEEDS:-3}" "${ns[@]}" --ratio 1 --ratio 4 --generator vae "${ref[@]}" "${arms[@]}" \
        --seg-steps "${STUDY_SEG_STEPS:-300}" --seg-batch-size 16 --seg-base-channels 16 --gen-steps "${STUDY_GEN_STEPS:-400}" \
        --gen-base-channels 16 --device "$device" ${STUDY_FLAGS:-}
    fi
    if has compare && [ "$large" != 0 ]; then  # issue 13 at full size: every architecture, one budget
      launch -n 10 "compare-$large" "$py" -m medinpaint compare --data "$data" --size "$large" -o "$compare" --overwrite \
        --seeds "${COMPARE_SEEDS:-1}" --minutes "${COMPARE_MINUTES:-0.5}" --batch-size 16 --base-channels 32 \
        --device "$device" --no-progress ${COMPARE_FLAGS:-}
    fi
    if has lesions && [ "$large" != 0 ]; then  # issue 16 at full size: simulated lesions, then the protocol
      lesions_job() {
        "$py" -m medinpaint lesions simulate --healthy "$data" -o "$lesion_bench" --overwrite \
          --patients "${LESION_PATIENTS:-60}" --healthy-patients "${LESION_HEALTHY:-200}" --radius 10 24 &&
        "$py" -m medinpaint lesions protocol --lesions "$lesion_bench/lesions" --healthy "$lesion_bench/healthy" \
          -o "$lesion_report" --overwrite --seeds "${LESION_SEEDS:-2}" --seg-steps "${LESION_SEG_STEPS:-400}" \
          --painter-steps 600 --mask-steps 600 --radius 8 24 --test-fraction 0.5 --device "$device" --no-progress ${LESION_FLAGS:-}
      }
      export -f lesions_job 2>/dev/null
      export py device data lesion_bench lesion_report
      launch -n 10 "lesions-$large" bash -c lesions_job
    fi
    if has samplers && [ -f "$diff_small/model.safetensors" ] && [ -f "$enc_small/model.safetensors" ] && derive_small; then
      rm -f "$logs/samplers.jsonl"
      launch -n 5 samplers "$py" benchmarks/sampler_quality.py --data "$data_small" --weights "$diff_small/model.safetensors" \
        --encoder "$enc_small/model.safetensors" -n "${SAMPLER_N:-2000}" --batch-size "${REPORT_BATCH:-512}" \
        --device "$device" --json "$logs/samplers.jsonl" --runs ${SAMPLER_RUNS:-ddim:10 ddim:25 ddim:50 dpm++:5 dpm++:10 dpm++:20}
    fi
    wait_jobs
    # Sampling speed, alone on the GPU: uncompiled, then compiled, then the full DDPM chain, each only if it still
    # fits before the deadline.
    if has speed && [ -f "$diff_small/model.safetensors" ]; then
      speed_n=${SPEED_N:-1024}
      runs_list=${SPEED_RUNS:-ddim:10 ddim:25 ddim:50 dpm++:10 ddpm:100 vae}
      rm -f "$logs/speed.jsonl"
      speed() {  # NAME MIN_SECONDS_LEFT N RUNS [flags]
        if [ "$(left)" -lt "$2" ]; then say "skip $1: too little time left"; return; fi
        launch "$1" "$py" benchmarks/synth_speed.py --size "$small" --device "$device" --weights "$diff_small/model.safetensors" \
          --n "$3" --batch-size "$3" --runs $4 --json "$logs/speed.jsonl" "${@:5}" ${SPEED_FLAGS:-}
        wait_jobs
      }
      speed speed "${SPEED_MIN_LEFT_S:-45}" "$speed_n" "$runs_list"
      if [ -n "$compile" ]; then speed speed-compiled 90 "$speed_n" "$runs_list" --compile; fi
      if [ "$device" = cuda ]; then speed speed-ddpm1000 60 $((speed_n / 8)) ddpm:1000; fi
    fi
    ;;
  *) say "unknown stage $stage (train, extend)"; exit 2 ;;
esac

# --- what comes back
[ -n "$monitor" ] && kill "$monitor" 2>/dev/null
failed=$(awk -F'\t' '$4 != 0 {print $1}' "$logs/jobs.tsv" | tr '\n' ' ')
extra=()  # this call's report (not an older one left in its folder) and speed figures
grep -q "^report-$small"$'\t'".*"$'\t'"0\$" "$logs/jobs.tsv" && extra+=(--report "$report/summary.json")
[ -f "$logs/speed.jsonl" ] && extra+=(--speed "$logs/speed.jsonl")
[ -f "$logs/samplers.jsonl" ] && extra+=(--samplers "$logs/samplers.jsonl")
if [ -f "$study/results.csv" ]; then extra+=(--study "$study/results.csv")
elif [ -f "$(dirname "$study")/.$(basename "$study").partial/rows.jsonl" ]; then extra+=(--study "$(dirname "$study")/.$(basename "$study").partial/rows.jsonl"); fi
"$py" benchmarks/session_summary.py --logs "$logs" --stage "$stage" "${jobs_summary[@]/#/--job=}" "${extra[@]}" \
  || say "warning: the summary failed"
for f in "$compare/results.md" "$lesion_report/results.md"; do  # the tables of this call's comparisons
  grep -q "^\(compare\|lesions\)-$large"$'\t'".*"$'\t'"0\$" "$logs/jobs.tsv" && [ -f "$f" ] && { echo "--- $f"; cat "$f"; }
done
say "packing the logs"
exec 1>&3 2>&4  # session.log is complete: stop teeing into the folder being archived
wait "$tee_pid" 2>/dev/null
tar -czf "$out/logs.tar.gz" -C "$runs" --exclude='*.safetensors' --exclude='*.pt' --exclude='*.tmp' --exclude='lesion-bench-*' \
  --exclude='*.npz' --exclude='*.npy' .
status=0
count=$(find "$out" -mindepth 1 | wc -l)
if [ "$count" -gt 8 ]; then echo "warning: $count entries in $out; a call returns at most 8 files"; status=1; fi
while IFS= read -r f; do
  size=$(stat -c %s "$f")
  if [ "$size" -gt $((16 * 1024 * 1024)) ]; then echo "warning: $f is $size bytes, over the 16 MiB a returned file may be"; status=1; fi
done < <(find "$out" -type f)
ls -l "$out"
if [ -n "$failed" ]; then
  echo "failed or interrupted: $failed"
  for name in $failed; do [ -f "$logs/$name.log" ] && { echo "--- $name.log (end)"; tail -n 4 "$logs/$name.log"; }; done
  status=1
fi
echo "gpu_session.sh $stage: done in $(($(date +%s) - t0)) s"
exit $status
