#!/usr/bin/env bash
# Writes configs/paper/<stream>_fmnist_<method>.ini for every method of the
# protocol, from the paper profile (configs/paper/<stream>_fmnist.ini) and the
# strength the protocol's validation grid chose (results/protocol_<stream>/chosen.csv,
# written by build/sweep configs/sweep_<stream>_fmnist.ini).
# Usage: scripts/make_algorithm_configs.sh split|permuted [PROTOCOL_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
stream=${1:?usage: scripts/make_algorithm_configs.sh split\|permuted [PROTOCOL_DIR]}
protocol=${2:-results/protocol_$stream}
base=configs/paper/${stream}_fmnist.ini
chosen=$protocol/chosen.csv
[ -s "$chosen" ] || { echo "make_algorithm_configs: $chosen not found: run build/sweep configs/sweep_${stream}_fmnist.ini first" >&2; exit 1; }

write_config() {  # write_config METHOD ALGORITHM [SECTION KEY VALUE NOTE]
  local method=$1 algorithm=$2 section=${3:-} key=${4:-} value=${5:-} note=${6:-}
  local file=configs/paper/${stream}_fmnist_${method}.ini
  {
    echo "# ${stream} Fashion-MNIST with ${method} on the paper profile: ${base} plus the settings below."
    if [ -n "$section" ]; then
      echo "# ${section}.${key} = ${value} was chosen by build/sweep configs/sweep_${stream}_fmnist.ini on validation"
      echo "# data (10% of each task's training data, seed 100), never on test data. ${note}"
    fi
    echo "#   mpirun -np 2 build/train --config ${file}"
    echo
    # The base's own [anpyc] section (the released lambda) is its last one: replaced below for ANPyC.
    sed -e "s/^algorithm = .*/algorithm = ${algorithm}/" -e '/^#/d' -e '/^\[anpyc\]/,$d' "$base"
    if [ "$algorithm" = anpyc ]; then
      echo "[anpyc]"
      echo "prune = $([ "$method" = anpyc-noprune ] && echo false || echo true)"
      [ -z "$key" ] || echo "${key} = ${value}"
    elif [ -n "$section" ]; then
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
