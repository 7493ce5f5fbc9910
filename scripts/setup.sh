#!/usr/bin/env bash
# Installs every dependency from Debian's packages (when missing) and builds
# the project into build/. Safe to run again: it only does what is missing.
#   scripts/setup.sh            everything (executables, tests, fuzz targets)
#   scripts/setup.sh train      only the named targets (the default experiment needs train alone)
set -euo pipefail
cd "$(dirname "$0")/.."

PACKAGES=(
  build-essential cmake pkg-config
  libtorch-dev libopenblas0-openmp       # LibTorch; OpenBLAS instead of the slow reference BLAS
  libopenmpi-dev openmpi-bin             # MPI communicator and mpirun
  libboost-program-options-dev           # command-line and INI options
  libhdf5-dev                            # checkpoints
  libxxhash-dev                          # fingerprints (header-only use)
  libopencv-dev                          # image folders (data.format=image_folder)
  libmatio-dev                           # SVHN's .mat files (data.datasets svhn:)
  libgtest-dev                           # tests
  clang libclang-rt-14-dev               # libFuzzer targets (tests/fuzz)
  nlohmann-json3-dev zlib1g-dev          # results.json, gzipped IDX files
  dataset-fashion-mnist                  # the real data of the default experiment
  gnuplot-nox                            # report --plots
  python3-h5py python3-numpy python3-xxhash  # the h5py checkpoint reader of docs/checkpoint_format.md, tested
  python3-torch                          # PyTorch references: scripts/bench_ddp.py, scripts/bench_gpu.py (tests/cli_gpu_check.sh)
  debootstrap                            # scripts/check_deps_prefix.sh: the GPU prefix proven in a clean Debian root
  slurm-wlm slurm-wlm-basic-plugins munge  # throwaway one-node Slurm of tests/slurm_preempt.sh (pmix plugin)
)
missing=()
for package in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed" || missing+=("$package")
done
if [ "${#missing[@]}" -gt 0 ]; then
  echo "setup: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO=sudo
  $SUDO apt-get update
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y --no-install-recommends "${missing[@]}"
fi

cmake -S . -B build -DCMAKE_BUILD_TYPE=Release
if [ "$#" -gt 0 ]; then
  cmake --build build -j"$(nproc)" --target "$@"
else
  cmake --build build -j"$(nproc)"
fi
