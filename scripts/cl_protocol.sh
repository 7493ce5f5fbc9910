#!/usr/bin/env bash
# The paper's comparison protocol on Fashion-MNIST, for one stream:
#   1. a small grid of each method's strength on held-out validation data
#      (10% of every task's training data, seed 100), the same number of
#      grid points (4) for every method that has one;
#   2. the chosen value trained on the full training data with seeds 1, 2, 3
#      (weights, sampling order and, for permuted, the permutations), each
#      with a joint run of the same seed for the paper's FWT;
#   3. a table of FWT, BWT, ACC (mean ± std over the seeds) from `report`.
# Runs are 1 rank each, JOBS at a time; a finished run is skipped, so an
# interrupted protocol continues where it stopped.
#
# Usage: scripts/cl_protocol.sh split|permuted [OUT_DIR]   (env JOBS=2, EXTRA="--opt=value ...")
set -euo pipefail
cd "$(dirname "$0")/.."
stream=${1:?usage: scripts/cl_protocol.sh split\|permuted [OUT_DIR]}
out=${2:-runs/protocol_$stream}
jobs=${JOBS:-2}
case "$stream" in
  split) config=configs/split_fmnist.ini; data=() ;;
  # 10 permuted tasks of 10000 training samples (of 60000) and 2000 test samples: the
  # full protocol of 4 x 6 grid points and 30 seeded runs fits in minutes on 2 cores.
  permuted) config=configs/permuted_fmnist.ini; data=(--data.train_samples_per_task=10000 --data.test_samples_per_task=2000) ;;
  *) echo "cl_protocol: stream must be split or permuted" >&2; exit 2 ;;
esac
read -r -a extra <<< "${EXTRA:-}"
common=(--config "$config" "${data[@]}" --run.threads=1 --run.progress=off "${extra[@]}")

# method | arguments | grid option | grid values
# Ranges are decades around each method's working scale. ANPyC's Omega comes
# from the gradient of the batch-mean entropy (the released code sums over a
# batch of 256), so its lambda sits 10^3-10^6 times above the released 3.
methods=(
  "sgd|--train.algorithm=sgd||"
  "sgdf|--train.algorithm=sgdf||"
  "finetune|--train.algorithm=finetune||"
  "ewc|--train.algorithm=ewc|ewc.lambda|10 100 1000 10000"
  "si|--train.algorithm=si|si.c|1 10 100 1000"
  "mas|--train.algorithm=mas|mas.lambda|0.1 1 10 100"
  "lwf|--train.algorithm=lwf|lwf.lambda|0.25 1 4 16"
  "anpyc-noprune|--train.algorithm=anpyc --anpyc.prune=false|anpyc.lambda|1000 10000 100000 1000000"
  "anpyc|--train.algorithm=anpyc --anpyc.prune=true|anpyc.lambda|1000 10000 100000 1000000"
)

# run_all FILE: runs the command lines in FILE, JOBS at a time, skipping finished runs.
run_all() {
  local count
  count=$(wc -l < "$1")
  echo "cl_protocol: $count runs, $jobs at a time"
  xargs -P "$jobs" -d '\n' -I{} bash -c '{}' < "$1"
}
# job DIR ARGS...: one line of a job file.
job() {
  local dir=$1; shift
  printf '[ -s %q/results.json ] || { mkdir -p %q && build/train %s --output %q > %q/stdout.log 2>&1 && echo "done %s" || echo "FAILED %s (see %s/stdout.log)"; }\n' \
    "$dir" "$dir" "$(printf '%q ' "$@")" "$dir" "$dir" "$dir" "$dir" "$dir"
}
# Validation ACC of a finished run; empty for a run that failed (e.g. diverged).
acc_of() { [ -s "$1/metrics.csv" ] && awk -F, '$1 == "acc" { print $2 }' "$1/metrics.csv" || true; }

mkdir -p "$out"
jobfile="$out/jobs.txt"

# 1. grid on validation data
: > "$jobfile"
for entry in "${methods[@]}"; do
  IFS='|' read -r name arguments option grid <<< "$entry"
  [ -n "$option" ] || continue
  read -r -a args <<< "$arguments"
  for value in $grid; do
    job "$out/grid/$name/$option=$value" "${common[@]}" "${args[@]}" --"$option=$value" \
      --data.validation_fraction=0.1 --eval.split=validation --train.seed=100 --data.seed=100 >> "$jobfile"
  done
done
run_all "$jobfile"

chosen="$out/chosen.txt"
: > "$chosen"
for entry in "${methods[@]}"; do
  IFS='|' read -r name arguments option grid <<< "$entry"
  [ -n "$option" ] || continue
  best="" best_acc=-1
  for value in $grid; do
    acc=$(acc_of "$out/grid/$name/$option=$value")
    [ -n "$acc" ] || { echo "  $name $option=$value: no result (failed run), not a candidate"; continue; }
    if awk -v a="$acc" -v b="$best_acc" 'BEGIN { exit !(a > b) }'; then best=$value best_acc=$acc; fi
  done
  [ -n "$best" ] || { echo "cl_protocol: every grid point of $name failed" >&2; exit 1; }
  echo "$name $option=$best validation_acc=$best_acc" | tee -a "$chosen"
done

# 2. seeds: joint first (its accuracies are m_i of FWT), then every method
: > "$jobfile"
for seed in 1 2 3; do
  job "$out/seeds/joint/seed$seed" "${common[@]}" --train.algorithm=joint --train.seed=$seed --data.seed=$seed >> "$jobfile"
done
run_all "$jobfile"
: > "$jobfile"
for seed in 1 2 3; do
  for entry in "${methods[@]}"; do
    IFS='|' read -r name arguments option grid <<< "$entry"
    read -r -a args <<< "$arguments"
    tuned=()
    [ -z "$option" ] || tuned=(--"$(awk -v n="$name" '$1 == n { print $2 }' "$chosen")")
    job "$out/seeds/$name/seed$seed" "${common[@]}" "${args[@]}" "${tuned[@]}" --train.seed=$seed --data.seed=$seed \
      --metrics.joint_results="$out/seeds/joint/seed$seed/results.json" >> "$jobfile"
  done
done
run_all "$jobfile"

# 3. the table: finished runs only; runs that failed (diverged) are listed, not hidden.
dirs=()
: > "$out/failed.txt"
for name in $(for entry in "${methods[@]}"; do echo "${entry%%|*}"; done) joint; do
  for dir in "$out"/seeds/"$name"/seed*; do
    if [ -s "$dir/results.json" ]; then dirs+=("$dir"); else
      echo "$dir: $(grep -h 'error' "$dir/stdout.log" | head -1)" >> "$out/failed.txt"; fi
  done
done
build/report --group-by folder --csv "$out/table.csv" "${dirs[@]}" | tee "$out/table.md"
if [ -s "$out/failed.txt" ]; then echo "failed runs (not in the table):"; cat "$out/failed.txt"; fi
