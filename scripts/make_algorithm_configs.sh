#!/usr/bin/env bash
# Writes configs/<stream>_fmnist_<method>.ini for every method of the
# protocol, from the base config and the hyperparameter the protocol's
# validation grid chose (runs/protocol_<stream>/chosen.csv, written by the
# sweep of scripts/cl_protocol.sh).
# Usage: scripts/make_algorithm_configs.sh split|permuted [PROTOCOL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
stream=${1:?usage: scripts/make_algorithm_configs.sh split\|permuted [PROTOCOL_DIR]}
protocol=${2:-runs/protocol_$stream}
base=configs/${stream}_fmnist.ini
chosen=$protocol/chosen.csv
[ -s "$chosen" ] || { echo "make_algorithm_configs: $chosen not found: run scripts/cl_protocol.sh $stream first" >&2; exit 1; }

write_config() {  # write_config METHOD ALGORITHM [SECTION KEY VALUE NOTE]
  local method=$1 algorithm=$2 section=${3:-} key=${4:-} value=${5:-} note=${6:-}
  local file=configs/${stream}_fmnist_${method}.ini
  {
    echo "# ${stream} Fashion-MNIST with ${method}: ${base} plus the settings below."
    if [ -n "$section" ]; then
      echo "# ${section}.${key} = ${value} was chosen by scripts/cl_protocol.sh ${stream} (configs/sweep_${stream}_fmnist.ini): a grid of 4 values"
      echo "# on validation data (10% of each task's training data, seed 100), never on test data."
      echo "# ${note}"
    fi
    echo "#   mpirun -np 2 build/train --config ${file}"
    echo
    sed -e "s/^algorithm = .*/algorithm = ${algorithm}/" -e '/^# /d' -e '/^#$/d' "$base"
    if [ "$method" = anpyc-noprune ] || [ "$method" = anpyc ]; then
      echo
      echo "[anpyc]"
      echo "prune = $([ "$method" = anpyc ] && echo true || echo false)"
      echo "${key} = ${value}"
    elif [ -n "$section" ]; then
      echo
      echo "[${section}]"
      echo "${key} = ${value}"
    fi
  } > "$file"
  echo "wrote $file"
}

for method in sgd sgdf finetune joint; do write_config "$method" "$method"; done
# chosen.csv: method,option=value,validation_acc (a header line first)
tail -n +2 "$chosen" | while IFS=, read -r method setting validation; do
  option=${setting%%=*} value=${setting#*=}
  algorithm=$method
  [ "$method" != anpyc-noprune ] || algorithm=anpyc
  write_config "$method" "$algorithm" "${option%%.*}" "${option#*.}" "$value" "Validation ACC of the chosen value: ${validation}."
done
