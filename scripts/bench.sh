#!/usr/bin/env bash
# Every benchmark of docs/benchmarks.md in one run: PyTorch DDP first (its
# steps/s feed the comparison table), then build/bench's suites on 2 ranks.
# Tables go to stdout and to out/bench/tables.md; raw figures to out/bench/*.json.
#
#   bash scripts/bench.sh                 # everything (about 10 minutes on 2 cores)
#   bash scripts/bench.sh --suite allreduce --models mlp   # extra options go to build/bench
set -euo pipefail
cd "$(dirname "$0")/.."
[ -x build/bench ] || bash scripts/setup.sh
# The DDP reference needs Debian's PyTorch (the same 1.13 as libtorch-dev).
if ! /usr/bin/python3 -c "import torch" 2>/dev/null; then
  apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y python3-torch
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
RANKS=${RANKS:-2}
MPI=(mpirun -np "$RANKS" --oversubscribe --bind-to none)
mkdir -p out/bench
echo "== PyTorch DDP reference ($RANKS ranks, gloo, 1 thread each)"
"${MPI[@]}" /usr/bin/python3 scripts/bench_ddp.py --json out/bench/ddp.json
echo "== build/bench ($RANKS ranks, 1 thread each)"
"${MPI[@]}" build/bench --json out/bench/bench.json --ddp-json out/bench/ddp.json "$@" | tee out/bench/tables.md
