#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs and builds (setup.sh),
# then runs every test through ctest (unit, 2-rank MPI, command line).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
ctest --test-dir build --output-on-failure "$@"
