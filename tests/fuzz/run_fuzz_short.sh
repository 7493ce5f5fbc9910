#!/usr/bin/env bash
# Runs each libFuzzer target of tests/fuzz for a short time on seeds it writes
# itself (valid checkpoints and IDX files from this build). Fails on any crash,
# sanitizer report, timeout or out-of-memory; the offending input is then kept
# in BUILD_DIR/fuzz-artifacts/ (reproduce with: BUILD_DIR/fuzz_checkpoint FILE).
#
# Usage: run_fuzz_short.sh BUILD_DIR [SECONDS_PER_TARGET] [TARGET...]
set -euo pipefail
build=$(cd "$1" && pwd)
seconds=${2:-20}
shift $(( $# >= 2 ? 2 : 1 ))
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=(fuzz_checkpoint fuzz_idx)

work=$(mktemp -d "${TMPDIR:-/tmp}/clx_fuzz_short.XXXXXX")
trap 'rm -rf "$work"' EXIT
# The harnesses write each input to a file under TMPDIR.
export TMPDIR=$work
# LibTorch and HDF5 keep memory reachable in caches until exit: not leaks.
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=0:abort_on_error=0}

status=0
for target in "${targets[@]}"; do
  exe=$build/$target
  dir=$work/$target
  mkdir -p "$dir/seeds" "$dir/corpus" "$dir/artifacts"
  CLX_FUZZ_WRITE_SEEDS=$dir/seeds "$exe"
  echo "== $target: $(ls "$dir/seeds" | wc -l) seeds, ${seconds} s"
  if "$exe" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 -print_final_stats=1 \
       -artifact_prefix="$dir/artifacts/" "$dir/corpus" "$dir/seeds" > "$dir/log" 2>&1; then
    grep -E '^stat::number_of_executed_units|^Done ' "$dir/log" || true
  else
    status=1
    echo "!! $target FAILED; last lines of its log:"
    tail -n 60 "$dir/log"
    mkdir -p "$build/fuzz-artifacts"
    cp -v "$dir"/artifacts/* "$build/fuzz-artifacts/" 2>/dev/null || true
  fi
done
exit $status
