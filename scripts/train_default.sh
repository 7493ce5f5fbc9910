#!/usr/bin/env bash
# The default experiment from a fresh machine: installs and builds train (setup.sh),
# then trains split Fashion-MNIST (5 tasks of 2 classes, multi-head MLP) with
# fine-tuning on 2 MPI ranks. Extra arguments go to train, e.g.
#   scripts/train_default.sh --train.algorithm=joint --output runs/joint
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh train   # the tests and fuzz targets are built by scripts/test.sh
MPIRUN=(mpirun -np 2 --oversubscribe --bind-to none)
[ "$(id -u)" -ne 0 ] || MPIRUN+=(--allow-run-as-root)
"${MPIRUN[@]}" build/train --config configs/split_fmnist.ini --output runs/split_fmnist "$@"
