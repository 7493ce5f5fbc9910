#!/usr/bin/env bash
# The paper's comparison protocol on Fashion-MNIST, for one stream. The
# protocol itself lives in one place, the sweep files
# configs/sweep_split_fmnist.ini and configs/sweep_permuted_fmnist.ini
# (validation grid of 4 values per method, seeds 1-3, a joint run per seed);
# this script runs `build/sweep` on them (docs/sweep.md). Rerunning it skips
# finished runs and resumes interrupted ones. Results: OUT_DIR/report.md,
# report.csv, plots/ and chosen.csv (read by scripts/make_algorithm_configs.sh).
#
# Usage: scripts/cl_protocol.sh split|permuted [OUT_DIR]
#   env EXTRA: more sweep arguments, e.g. EXTRA="--seeds 1 --ranks 1"; train
#   options given as --section.option=value are passed to every run (--set).
set -euo pipefail
cd "$(dirname "$0")/.."
stream=${1:?usage: scripts/cl_protocol.sh split\|permuted [OUT_DIR]}
case "$stream" in
  split | permuted) ;;
  *) echo "cl_protocol: stream must be split or permuted" >&2; exit 2 ;;
esac
[ -x build/sweep ] || { echo "cl_protocol: build/sweep not found: run bash scripts/setup.sh first" >&2; exit 2; }
[ -z "${JOBS:-}" ] || echo "cl_protocol: JOBS is no longer used: runs go one at a time on the sweep file's ranks (EXTRA=\"--ranks N\")" >&2
args=("configs/sweep_${stream}_fmnist.ini")
[ -z "${2:-}" ] || args+=(--output "$2")
read -r -a extra <<< "${EXTRA:-}"
for word in "${extra[@]}"; do
  case "$word" in
    --*.*=*) args+=(--set "${word#--}") ;;
    *) args+=("$word") ;;
  esac
done
exec build/sweep "${args[@]}"
