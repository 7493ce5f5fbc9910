#!/usr/bin/env bash
# gpu_check.sh: the GPU validation of DESIGN.md §8 in one call, for a bare GPU
# machine with CUDA, a CUDA PyTorch and a compiler, plus the dependency prefix
# of scripts/deps_prefix.sh. See docs/gpu.md.
#
#   bash scripts/gpu_check.sh --prefix .gpu/deps --out "$OUT"          # on the GPU machine
#   bash scripts/gpu_check.sh --device cpu --use-build build --quick   # the same phases on CPU (tests/gpu_check_cpu.sh)
#
# Phases, each logged with timestamps to OUT/logs/PHASE.log; a failed phase is
# recorded and the next one runs (one that needs the build is skipped without it):
#   preflight   tools, glibc/libstdc++ against the prefix's REQUIREMENTS, PyTorch's
#               C++ ABI, nvidia-smi, CUDA and NCCL; writes OUT/env.json
#   build       cmake (Ninja) against PyTorch's LibTorch, NCCL and the prefix: train, bench, test_unit
#   unit        test_unit with CLX_TEST_DEVICE=DEVICE
#   train_*     split Fashion-MNIST on the MLP and a short ResNet-18 sequence, fp32 and bf16,
#               run.device=DEVICE over NCCL on one rank (no mpirun)
#   resume      SIGUSR1 mid-task (exit 3), --resume, accuracy_matrix.csv equal bit for bit
#               to an uninterrupted run (run.deterministic=true)
#   bench_*     steps/s of the framework (build/bench) and of PyTorch eager and DDP
#               (scripts/bench_gpu.py) on the same device, model, batch and precision
# and after every phase the report: OUT/gpu_report.md and OUT/gpu_report.json
# (scripts/gpu_report.py), with the targets of the GPU issue met or not.
# The whole run stays inside --budget seconds (default 540: a device call has
# 600): a phase gets at most what is left, and phases with no time left are
# skipped and reported as such. Exit status: 0 when every phase passed (in CPU
# mode, bf16 is skipped by design), 1 otherwise.
# shellcheck disable=SC2317  # the phase functions are called through run_phase
set -euo pipefail
SRC=$(cd "$(dirname "$0")/.." && pwd)
START=$(date +%s)

usage() {
  sed -n '2,26p' "$0" | sed 's/^# \{0,1\}//'
  cat <<'EOF'

Options:
  --prefix DIR      dependency prefix of scripts/deps_prefix.sh (default .gpu/deps when it exists;
                    none: the system's packages)
  --out DIR         report, logs and runs (default out/gpu)
  --device D        cuda (default) | cpu (the same phases on CPU: fp32 only, single backend)
  --build-dir DIR   where to build (default build-gpu)
  --use-build DIR   skip the build phase and use the executables of an existing build
  --data DIR        Fashion-MNIST (default PREFIX/data/fashion-mnist, else /usr/share/datasets/fashion-mnist)
  --python PY       a Python with torch (default: the first of $PYTHON, python3, python, /usr/bin/python3 that has it)
  --budget SECONDS  wall-clock budget of the whole run (default 540)
  --quick           tiny step counts and data (the CPU test of this script)
Environment: CLX_GPU_CMAKE_ARGS (extra cmake arguments), CLX_UNIT_FILTER (a --gtest_filter).
EOF
}

PREFIX=$SRC/.gpu/deps PREFIX_GIVEN=0 OUT_DIR=$SRC/out/gpu DEVICE=cuda BUILD=$SRC/build-gpu USE_BUILD="" DATA="" PY=""
BUDGET=540 QUICK=0
while [ $# -gt 0 ]; do
  case "$1" in
    -h|--help) usage; exit 0 ;;
    --prefix) PREFIX=${2:?--prefix needs a folder or none}; PREFIX_GIVEN=1; shift ;;
    --out) OUT_DIR=${2:?--out needs a folder}; shift ;;
    --device) DEVICE=${2:?--device needs cuda or cpu}; shift ;;
    --build-dir) BUILD=${2:?--build-dir needs a folder}; shift ;;
    --use-build) USE_BUILD=${2:?--use-build needs a build folder}; shift ;;
    --data) DATA=${2:?--data needs a folder}; shift ;;
    --python) PY=${2:?--python needs an interpreter}; shift ;;
    --budget) BUDGET=${2:?--budget needs seconds}; shift ;;
    --quick) QUICK=1 ;;
    *) echo "gpu_check.sh: error: unknown argument '$1' (see --help)" >&2; exit 2 ;;
  esac
  shift
done
case "$DEVICE" in cuda|cpu) ;; *) echo "gpu_check.sh: error: --device '$DEVICE' is not one of cuda, cpu" >&2; exit 2 ;; esac
[[ "$BUDGET" =~ ^[0-9]+$ ]] || { echo "gpu_check.sh: error: --budget '$BUDGET' is not a number of seconds" >&2; exit 2; }
if [ -n "$USE_BUILD" ]; then
  [ -x "$USE_BUILD/train" ] || { echo "gpu_check.sh: error: --use-build $USE_BUILD has no train executable" >&2; exit 2; }
  BUILD=$USE_BUILD
fi
absolute() { (cd "$1" && pwd); }
mkdir -p "$OUT_DIR"
OUT_DIR=$(absolute "$OUT_DIR")
if [ "$PREFIX" = none ]; then
  PREFIX=""
elif [ -f "$PREFIX/prefix.cmake" ]; then
  PREFIX=$(absolute "$PREFIX")
elif [ "$PREFIX_GIVEN" = 1 ]; then
  echo "gpu_check.sh: error: --prefix $PREFIX is not a prefix of scripts/deps_prefix.sh (no prefix.cmake)" >&2
  exit 2
else
  PREFIX=""  # the default .gpu/deps is not there: the system's packages
fi
mkdir -p "$BUILD"
BUILD=$(absolute "$BUILD")
if [ -z "$DATA" ]; then
  DATA=/usr/share/datasets/fashion-mnist
  [ -n "$PREFIX" ] && [ -d "$PREFIX/data/fashion-mnist" ] && DATA=$PREFIX/data/fashion-mnist
fi
rm -rf "$OUT_DIR/logs" "$OUT_DIR/runs" "$OUT_DIR/bench" "$OUT_DIR/notes" "$OUT_DIR/train_help.txt"
mkdir -p "$OUT_DIR/logs" "$OUT_DIR/runs" "$OUT_DIR/bench" "$OUT_DIR/notes"
PHASES=$OUT_DIR/phases.tsv
printf 'phase\tstatus\tseconds\tnote\n' > "$PHASES"
export OUT_DIR DEVICE
export NCCL_DEBUG=${NCCL_DEBUG:-WARN}  # NCCL's warnings in the phase logs

# ---- phases: logging, budget, records -----------------------------------------------------
stamp() { date -u +%H:%M:%S; }
elapsed() { echo $(( $(date +%s) - START )); }
# Seconds a phase may still use: its own cap (sized for the GPU machine; five
# times that on CPU), within what is left of the budget (20 s are kept for the report).
CAP_SCALE=1
[ "$DEVICE" = cpu ] && CAP_SCALE=5
limit() {
  local cap=$(( $1 * CAP_SCALE )) left=$(( BUDGET - $(elapsed) - 20 ))
  if [ "$left" -lt "$cap" ]; then echo "$left"; else echo "$cap"; fi
}
# Inside a phase: runs a command under the phase's time limit.
tmo() { timeout --kill-after=10 "$PHASE_LIMIT" "$@"; }
# Inside a phase: one line for the report's note column.
note() { [ -z "$*" ] || { echo "$*" >> "$OUT_DIR/notes/$PHASE"; echo "note: $*"; }; }
log() { echo "[$(stamp)] $*" | tee -a "$OUT_DIR/logs/gpu_check.log"; }
FAILED=0
record() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$PHASES"; }
phase_status() { awk -F'\t' -v p="$1" '$1 == p { s = $2 } END { print s }' "$PHASES"; }
write_report() {
  "${PY:-python3}" "$SRC/scripts/gpu_report.py" "$OUT_DIR" >> "$OUT_DIR/logs/report.log" 2>&1 ||
    log "report: scripts/gpu_report.py failed (see logs/report.log)"
}

# run_phase NAME CAP_SECONDS FUNCTION [NEEDS_PHASE...]: runs FUNCTION in a
# subshell with `set -e` (so its first failing command ends it), output to
# logs/NAME.log, and records ok / failed / skipped.
run_phase() {
  local name=$1 cap=$2 fn=$3
  shift 3
  PHASE=$name PHASE_LIMIT=$(limit "$cap")
  if [ "$PHASE_LIMIT" -lt 5 ]; then
    record "$name" skipped 0 "no time left in the ${BUDGET} s budget"
    log "$name: skipped (no time left)"
    FAILED=1
    write_report
    return
  fi
  local need
  for need in "$@"; do
    if [ "$(phase_status "$need")" != ok ]; then
      record "$name" skipped 0 "needs phase $need"
      log "$name: skipped (phase $need did not pass)"
      FAILED=1
      write_report
      return
    fi
  done
  log "$name: start (at most ${PHASE_LIMIT} s)"
  local begin rc
  begin=$(date +%s)
  set +e
  ( set -e; "$fn" ) 2>&1 | while IFS= read -r line; do echo "[$(stamp)] $line"; done >> "$OUT_DIR/logs/$name.log"
  rc=${PIPESTATUS[0]}
  set -e
  local seconds=$(( $(date +%s) - begin )) text=""
  [ -f "$OUT_DIR/notes/$name" ] && text=$(paste -sd';' "$OUT_DIR/notes/$name" | sed 's/;/; /g')
  if [ "$rc" -eq 0 ]; then
    record "$name" ok "$seconds" "$text"
    log "$name: ok (${seconds} s)"
  else
    if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then text="timed out after ${PHASE_LIMIT} s${text:+; $text}"; fi
    # The log's last error line (else its last line), so that the report says why.
    local why
    why=$(grep -iE 'error|fatal|exception|not found|neither' "$OUT_DIR/logs/$name.log" | tail -1 || true)
    [ -n "$why" ] || why=$(tail -1 "$OUT_DIR/logs/$name.log")
    why=$(echo "$why" | sed 's/^\[[0-9:]*\] //' | cut -c1-240)
    record "$name" failed "$seconds" "exit $rc${text:+; $text}${why:+; $why}"
    log "$name: FAILED (exit $rc, ${seconds} s; see logs/$name.log)"
    FAILED=1
  fi
  write_report
}

# ---- sizes --------------------------------------------------------------------------------------
if [ "$QUICK" = 1 ]; then
  SPLIT_ARGS=(--data.tasks=2 --data.train_samples_per_task=256 --data.test_samples_per_task=128 --train.epochs=1)
  RESNET_ARGS=(--model.arch=resnet18 --model.width=0.125 --data.tasks=2 --data.train_samples_per_task=64
               --data.test_samples_per_task=64 --train.epochs=1 --train.batch_size=32 --eval.batch_size=64)
  RESUME_ARGS=(--data.tasks=3 --data.train_samples_per_task=1000 --data.test_samples_per_task=100 --train.epochs=2
               --train.batch_size=100)
  # One thread: the CI machine's two cores are shared with the rest of the suite.
  SPLIT_ARGS+=(--run.threads=1) RESNET_ARGS+=(--run.threads=1) RESUME_ARGS+=(--run.threads=1)
  TIMING_ARGS=(--models mlp --batch 32 --mlp-steps 4 --conv-steps 1 --repeats 1)
else
  # The issue's runs: split Fashion-MNIST as configured (5 tasks x 5 epochs) and
  # ResNet-18 at half width, 2 tasks, 1 epoch; timing at full width.
  SPLIT_ARGS=()
  RESNET_ARGS=(--model.arch=resnet18 --model.width=0.5 --data.tasks=2 --train.epochs=1)
  RESUME_ARGS=(--data.tasks=3 --train.epochs=5)
  # shellcheck disable=SC2054  # the comma belongs to the value
  TIMING_ARGS=(--models mlp,resnet18 --batch 128 --mlp-steps 300 --conv-steps 50 --repeats 3 --width 1.0)
fi
# build/bench and scripts/bench_gpu.py take the same timing options.
PRECISIONS=(fp32 bf16)
# bf16 on a CPU without native bf16 is emulated (~50x slower than fp32 here): CPU mode runs fp32 only.
[ "$DEVICE" = cpu ] && PRECISIONS=(fp32)

# ---- preflight ----------------------------------------------------------------------------------
find_python() {
  local candidate
  for candidate in ${PYTHON:-} python3 python /usr/bin/python3; do
    command -v "$candidate" >/dev/null 2>&1 && "$candidate" -c 'import torch' >/dev/null 2>&1 && { echo "$candidate"; return; }
  done
}
[ -n "$PY" ] || PY=$(find_python)

# version_ge A B: A >= B (dotted versions)
version_ge() { [ "$(printf '%s\n%s\n' "$1" "$2" | sort -V | head -1)" = "$2" ]; }
# requirement NAME: the version REQUIREMENTS of the prefix names (glibc, glibcxx), or nothing.
requirement() {
  if [ -n "$PREFIX" ] && [ -f "$PREFIX/REQUIREMENTS" ]; then awk -F'[= ]' -v k="$1" '$1 == k { print $2 }' "$PREFIX/REQUIREMENTS"; fi
}

# Preflight findings: a blocker makes the build pointless (it is skipped); a
# problem fails the preflight phase but the build is still tried.
BLOCKERS=$OUT_DIR/notes/blockers
block() { echo "$*" >> "$BLOCKERS"; note "BLOCKER: $*"; }
problem() { echo "$*" >> "$OUT_DIR/notes/problems"; note "PROBLEM: $*"; }

preflight() {
  : > "$BLOCKERS"
  : > "$OUT_DIR/notes/problems"
  echo "gpu_check: device $DEVICE, source $SRC, prefix ${PREFIX:-none}, data $DATA, build $BUILD, budget ${BUDGET} s"
  uname -a; nproc; free -g | head -2 || true
  command -v cmake >/dev/null && cmake --version | head -1 || block "no cmake on PATH"
  local cxx
  cxx=$(command -v "${CXX:-c++}" || command -v g++ || command -v clang++ || true)
  if [ -n "$cxx" ]; then "$cxx" --version | head -1; else block "no C++ compiler (c++, g++, clang++ or \$CXX)"; fi
  command -v ninja >/dev/null && echo "ninja $(ninja --version)" || echo "no ninja: Unix Makefiles"
  ls "$DATA"/train-images-idx3-ubyte* >/dev/null 2>&1 ||
    problem "no Fashion-MNIST in $DATA (--data DIR; scripts/deps_prefix.sh DIR puts it in DIR/data/fashion-mnist)"

  # The prefix's archives need this glibc and libstdc++ (scripts/deps_prefix.sh measured them).
  local glibc have_glibc glibcxx libstdcxx
  glibc=$(requirement glibc)
  have_glibc=$(getconf GNU_LIBC_VERSION 2>/dev/null | awk '{print $2}')
  echo "glibc: ${have_glibc:-unknown}; the prefix needs ${glibc:-n/a}"
  if [ -n "$glibc" ] && [ -n "$have_glibc" ] && ! version_ge "$have_glibc" "$glibc"; then
    problem "glibc $have_glibc is older than the $glibc the prefix's Debian 12 archives need ($(grep '^glibc=' "$PREFIX/REQUIREMENTS" | cut -d' ' -f2-)): the link may fail; make the prefix from an older Debian"
  fi
  glibcxx=$(requirement glibcxx)
  libstdcxx=$([ -n "$cxx" ] && readlink -f "$("$cxx" -print-file-name=libstdc++.so.6)" || true)
  if [ -n "$glibcxx" ] && [ -f "$libstdcxx" ]; then
    if grep -qa "GLIBCXX_$glibcxx" "$libstdcxx"; then
      echo "libstdc++: $libstdcxx has GLIBCXX_$glibcxx"
    else
      problem "the compiler's libstdc++ ($libstdcxx) lacks GLIBCXX_$glibcxx, which the prefix's archives need (GCC 11 or newer): the link may fail"
    fi
  fi

  if [ -z "$PY" ]; then
    block "no Python with torch (tried \$PYTHON, python3, python, /usr/bin/python3; --python PY)"
  else
    echo "python: $PY"
    "$PY" - "$DEVICE" > "$OUT_DIR/env.json" <<'PYEOF'
import json, platform, sys
import torch
env = {"python": sys.version.split()[0], "torch": torch.__version__, "cuda": torch.version.cuda,
       "cxx11_abi": bool(torch._C._GLIBCXX_USE_CXX11_ABI), "cmake_prefix_path": torch.utils.cmake_prefix_path,
       "cuda_available": torch.cuda.is_available(), "platform": platform.platform()}
if torch.cuda.is_available():
    env["gpu"] = torch.cuda.get_device_name(0)
    env["gpu_count"] = torch.cuda.device_count()
    env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    env["cudnn"] = torch.backends.cudnn.version()
    try:
        env["nccl"] = ".".join(map(str, torch.cuda.nccl.version()))
    except Exception as error:  # a build without NCCL
        env["nccl"] = f"unavailable: {error}"
print(json.dumps(env, indent=2))
PYEOF
    cat "$OUT_DIR/env.json"
    # PyTorch >= 2.7 wheels use the C++11 ABI, as Debian's libraries in the prefix do.
    grep -q '"cxx11_abi": true' "$OUT_DIR/env.json" ||
      block "this PyTorch's LibTorch uses the pre-C++11 ABI (torch._C._GLIBCXX_USE_CXX11_ABI is 0): it cannot link with the prefix's libraries; use a PyTorch >= 2.7 wheel"
  fi
  if [ "$DEVICE" = cuda ]; then
    nvidia-smi || problem "nvidia-smi failed: no usable NVIDIA driver"
    grep -q '"cuda_available": true' "$OUT_DIR/env.json" 2>/dev/null || problem "torch.cuda.is_available() is not true"
    local nvcc nccl
    nvcc=$(cuda_home)/bin/nvcc
    if [ -x "$nvcc" ]; then "$nvcc" --version | tail -2; else block "no nvcc (CUDA_HOME, PATH or /usr/local/cuda)"; fi
    nccl=$(nccl_root)
    if [ -n "$nccl" ]; then note "NCCL: $nccl"; else note "NCCL: no nvidia-nccl wheel; the CUDA toolkit's, if any"; fi
  fi
  [ ! -s "$BLOCKERS" ] && [ ! -s "$OUT_DIR/notes/problems" ]
}

cuda_home() {
  if [ -n "${CUDA_HOME:-}" ]; then echo "$CUDA_HOME"
  elif command -v nvcc >/dev/null; then dirname "$(dirname "$(readlink -f "$(command -v nvcc)")")"
  else echo /usr/local/cuda
  fi
}
# The nvidia-nccl wheel of the Python that has torch (site-packages/nvidia/nccl).
nccl_root() {
  [ -n "$PY" ] || return 0
  "$PY" - <<'PYEOF' 2>/dev/null || true
import os, site, sysconfig
for base in [sysconfig.get_paths()["purelib"], sysconfig.get_paths()["platlib"]] + site.getsitepackages():
    root = os.path.join(base, "nvidia", "nccl")
    if os.path.exists(os.path.join(root, "include", "nccl.h")):
        print(root)
        break
PYEOF
}

# ---- build ------------------------------------------------------------------------------------------
build() {
  # CMAKE_POLICY_VERSION_MINIMUM: a CMake >= 4 still reads package files written for older ones.
  local args=(-S "$SRC" -B "$BUILD" -DCMAKE_BUILD_TYPE=Release -DCLX_FUZZ=OFF -DCLX_BUILD_TESTS=ON
              -DCMAKE_POLICY_VERSION_MINIMUM=3.5)
  command -v ninja >/dev/null && args+=(-G Ninja)
  [ -n "$PREFIX" ] && args+=(-C "$PREFIX/prefix.cmake")
  local torch_prefix
  torch_prefix=$("$PY" -c 'import torch; print(torch.utils.cmake_prefix_path)' 2>/dev/null || true)
  # Debian's python3-torch has no CMake files: LibTorch is then found where libtorch-dev put it.
  [ -n "$torch_prefix" ] && [ -d "$torch_prefix/Torch" ] && args+=(-DCMAKE_PREFIX_PATH="$torch_prefix")
  if [ "$DEVICE" = cuda ]; then
    local cuda nccl
    cuda=$(cuda_home)
    export PATH="$cuda/bin:$PATH" CUDA_HOME="$cuda"
    # H200 = sm_90: no architecture probing (TorchConfig enables CUDA as a language).
    export TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST:-9.0}
    args+=(-DCLX_WITH_NCCL=ON -DCUDAToolkit_ROOT="$cuda" -DCMAKE_CUDA_COMPILER="$cuda/bin/nvcc"
           -DCMAKE_CUDA_ARCHITECTURES=90)
    nccl=$(nccl_root)
    [ -n "$nccl" ] && args+=(-DNCCL_ROOT="$nccl")
  else
    args+=(-DCLX_WITH_NCCL=OFF)
  fi
  # shellcheck disable=SC2206  # word splitting of the extra arguments is meant
  [ -n "${CLX_GPU_CMAKE_ARGS:-}" ] && args+=(${CLX_GPU_CMAKE_ARGS})
  echo "cmake ${args[*]}"
  tmo cmake "${args[@]}"
  tmo cmake --build "$BUILD" -j"$(nproc)" --target train bench test_unit
  grep -E '^(Boost_DIR|GTest_DIR|nlohmann_json_DIR|HDF5_C_LIBRARY_hdf5|HDF5_hdf5_LIBRARY_RELEASE|ZLIB_LIBRARY|Torch_DIR|NCCL_LIBRARY|CLX_SZIP_LIBRARY|MATIO_LIBRARY):' \
    "$BUILD/CMakeCache.txt" || true
  note "built train, bench, test_unit in $BUILD"
}
use_existing_build() {
  for target in train bench tests/test_unit; do [ -x "$BUILD/$target" ] || { echo "no $BUILD/$target"; return 1; }; done
  note "using the existing build $BUILD"
}

# ---- unit tests -------------------------------------------------------------------------------------
unit() {
  local filter=()
  [ -n "${CLX_UNIT_FILTER:-}" ] && filter=(--gtest_filter="$CLX_UNIT_FILTER")
  CLX_TEST_DEVICE=$DEVICE tmo "$BUILD/tests/test_unit" --gtest_output=xml:"$OUT_DIR/unit.xml" "${filter[@]}"
}

# ---- training runs ----------------------------------------------------------------------------------
# Options the train executable knows (so that CPU mode also runs against a train without them).
# (train --help read once: loading LibTorch takes seconds.)
train_has() {
  [ -s "$OUT_DIR/train_help.txt" ] || "$BUILD/train" --help > "$OUT_DIR/train_help.txt" 2>&1 || true
  grep -q -- "--$1" "$OUT_DIR/train_help.txt"
}
# device_options [PRECISION]: sets DEVICE_OPTIONS, what every run of train gets
# here: the device, one rank over NCCL on a GPU (no mpirun), the precision.
device_options() {
  DEVICE_OPTIONS=()
  if [ "$DEVICE" = cuda ]; then
    DEVICE_OPTIONS+=(--run.device=cuda --run.backend=nccl)
  else
    if train_has run.device; then DEVICE_OPTIONS+=(--run.device=cpu); fi
    DEVICE_OPTIONS+=(--run.backend=single)
  fi
  if [ -n "${1:-}" ] && { [ "$DEVICE" = cuda ] || train_has train.precision; }; then
    DEVICE_OPTIONS+=(--train.precision="$1")
  fi
}
# train_run NAME PRECISION ARGS...: one run into OUT/runs/NAME (no checkpoints), ACC and time noted.
train_run() {
  local name=$1 precision=$2
  shift 2
  local dir=$OUT_DIR/runs/$name
  device_options "$precision"
  tmo "$BUILD/train" --config "$SRC/configs/split_fmnist.ini" --data.root="$DATA" --output "$dir" \
    --run.progress=lines --run.checkpoints=false "${DEVICE_OPTIONS[@]}" "$@"
  note "$(results_summary "$dir/results.json")"
}
results_summary() {
  "${PY:-python3}" - "$1" <<'PYEOF'
import json, sys
r = json.load(open(sys.argv[1]))
m = r["metrics"]
bwt = "n/a" if m.get("bwt") is None else f"{100 * m['bwt']:.2f}"
print(f"ACC {100 * m['acc']:.2f} BWT {bwt}, {len(r['tasks'])} tasks, {r['total_seconds']:.1f} s over {r['backend']}")
PYEOF
}
train_mlp_fp32() { train_run mlp_fp32 fp32 "${SPLIT_ARGS[@]}"; }
train_mlp_bf16() { train_run mlp_bf16 bf16 "${SPLIT_ARGS[@]}"; }
train_resnet18_fp32() { train_run resnet18_fp32 fp32 "${RESNET_ARGS[@]}"; }
train_resnet18_bf16() { train_run resnet18_bf16 bf16 "${RESNET_ARGS[@]}"; }

# ---- resume: SIGUSR1 mid-task, --resume, the same accuracy matrix bit for bit --------------------
resume() {
  local dir=$OUT_DIR/runs/resume run=()
  device_options
  run=("$BUILD/train" --config "$SRC/configs/split_fmnist.ini" --data.root="$DATA" --run.progress=lines
       "${DEVICE_OPTIONS[@]}" "${RESUME_ARGS[@]}")
  if [ "$DEVICE" = cuda ] || train_has run.deterministic; then run+=(--run.deterministic=true); fi
  # cuBLAS is deterministic only with a fixed workspace (PyTorch's "Reproducibility" notes).
  export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
  tmo "${run[@]}" --output "$dir/reference"
  mkdir -p "$dir"
  "${run[@]}" --output "$dir/interrupted" > "$dir/interrupted.out" 2>&1 &
  local pid=$! ticks=0 rc=0
  # Once task 2 has started, the stop lands mid-task.
  until grep -q "stage 2/" "$dir/interrupted/train.log" 2>/dev/null; do
    sleep 0.05
    ticks=$((ticks + 1))
    if [ "$ticks" -gt $((PHASE_LIMIT * 10)) ] || ! kill -0 "$pid" 2>/dev/null; then
      kill -9 "$pid" 2>/dev/null || true
      cat "$dir/interrupted.out"
      note "task 2 of the run to interrupt never started"
      return 1
    fi
  done
  kill -USR1 "$pid"
  # The checkpoint is written at the next step; a run that hangs is ended.
  ticks=0
  while kill -0 "$pid" 2>/dev/null && [ "$ticks" -lt $((PHASE_LIMIT * 5)) ]; do sleep 0.1; ticks=$((ticks + 1)); done
  kill -9 "$pid" 2>/dev/null || true
  wait "$pid" || rc=$?
  cat "$dir/interrupted.out"
  if [ "$rc" -ne 3 ]; then
    note "SIGUSR1 once task 2 had started gave exit $rc, not 3 (3: checkpoint written, stopped)"
    return 1
  fi
  note "$(grep -ho 'stopped by a signal [a-z]* [^;,]*' "$dir/interrupted.out" "$dir/interrupted/train.log" | head -1)"
  tmo "$BUILD/train" --resume "$dir/interrupted" --run.progress=lines
  note "$(grep -o 'resumed from a checkpoint: stage [^,]*, [a-z_]*' "$dir/interrupted/train.log" | head -1)"
  if cmp "$dir/reference/accuracy_matrix.csv" "$dir/interrupted/accuracy_matrix.csv"; then
    note "accuracy_matrix.csv identical to the uninterrupted run"
  else
    paste -d'|' "$dir/reference/accuracy_matrix.csv" "$dir/interrupted/accuracy_matrix.csv"
    note "accuracy_matrix.csv differs from the uninterrupted run"
    return 1
  fi
  rm -rf "$dir"/*/checkpoints  # HDF5 files: too large to bring back
}

# ---- timing -----------------------------------------------------------------------------------------
bench_ours() {  # PRECISION [EXTRA...]
  local precision=$1
  shift
  tmo "$BUILD/bench" --device "$DEVICE" --precision "$precision" --data "$DATA" --threads 1 "${TIMING_ARGS[@]}" \
    --json "$OUT_DIR/bench/ours_$precision.json" "$@"
}
# fp32: the overhead suite over NCCL (adds the one-rank NCCL overhead) and the importance pass.
bench_ours_fp32() {
  local backend=single
  [ "$DEVICE" = cuda ] && backend=nccl
  bench_ours fp32 --suite overhead,passes --backend "$backend"
}
bench_ours_bf16() { bench_ours bf16 --suite overhead --backend single; }
bench_pytorch() {
  [ -n "$PY" ] || { note "no Python with torch"; return 1; }
  tmo "$PY" "$SRC/scripts/bench_gpu.py" --device "$DEVICE" --precision "$(IFS=,; echo "${PRECISIONS[*]}")" \
    --data "$DATA" --threads 1 "${TIMING_ARGS[@]}" --json "$OUT_DIR/bench/pytorch.json"
}

# ---- the run ----------------------------------------------------------------------------------------
log "gpu_check: device $DEVICE, budget ${BUDGET} s, output $OUT_DIR"
run_phase preflight 60 preflight
if [ -n "$USE_BUILD" ]; then
  run_phase build 30 use_existing_build
elif [ ! -s "$BLOCKERS" ]; then
  run_phase build "$BUDGET" build  # whatever the budget has left: nothing else runs without it
else
  record build skipped 0 "preflight found a blocker: $(paste -sd';' "$BLOCKERS")"
  log "build: skipped (preflight found a blocker)"
  FAILED=1
fi
run_phase unit 120 unit build
for precision in "${PRECISIONS[@]}"; do run_phase "train_mlp_$precision" 60 "train_mlp_$precision" build; done
for precision in "${PRECISIONS[@]}"; do run_phase "train_resnet18_$precision" 90 "train_resnet18_$precision" build; done
run_phase resume 90 resume build
for precision in "${PRECISIONS[@]}"; do run_phase "bench_ours_$precision" 120 "bench_ours_$precision" build; done
run_phase bench_pytorch 120 bench_pytorch
if [ "$DEVICE" = cpu ]; then
  for name in train_mlp train_resnet18 bench_ours; do record "${name}_bf16" skipped 0 "CPU mode runs fp32 only"; done
fi
write_report
log "gpu_check: done in $(elapsed) s; report $OUT_DIR/gpu_report.md"
exit "$FAILED"
