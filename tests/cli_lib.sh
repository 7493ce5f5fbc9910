# Helpers for the command-line tests (sourced). Needs TRAIN, MPIRUN, SOURCE_DIR.
set -u
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
MPI=("$MPIRUN" --oversubscribe --bind-to none)
FMNIST=/usr/share/datasets/fashion-mnist
WORK=$(mktemp -d /tmp/clx-cli.XXXXXX)
trap 'rm -rf "$WORK"' EXIT
PASSED=0
FAILED=0

pass() { echo "ok   - $1"; PASSED=$((PASSED + 1)); }
fail() { echo "FAIL - $1"; FAILED=$((FAILED + 1)); }

# expect_failure NAME EXPECTED_SUBSTRING COMMAND...
# The command must exit non-zero within 120 s, print EXPECTED_SUBSTRING on
# stderr, and print exactly one "error:" line (one message even on 2 ranks).
expect_failure() {
  local name=$1 expected=$2
  shift 2
  local out="$WORK/out.txt" err="$WORK/err.txt" code
  timeout 120 "$@" >"$out" 2>"$err"
  code=$?
  if [ "$code" -eq 0 ]; then fail "$name: exited 0"; return; fi
  if [ "$code" -eq 124 ]; then fail "$name: hung (killed after 120 s)"; return; fi
  if ! grep -qF -- "$expected" "$err"; then
    fail "$name: stderr lacks '$expected'"; sed 's/^/    /' "$err" | head -20; return
  fi
  local errors
  errors=$(grep -c "error" "$err")
  if [ "$errors" -ne 1 ]; then fail "$name: $errors error lines instead of one"; sed 's/^/    /' "$err" | head -20; return; fi
  pass "$name (exit $code): $(grep error "$err" | head -1 | cut -c1-150)"
}

finish() {
  echo "$PASSED passed, $FAILED failed"
  [ "$FAILED" -eq 0 ]
}
