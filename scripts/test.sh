#!/usr/bin/env bash
# The whole test suite from a fresh machine: installs and builds (setup.sh),
# then runs every test through ctest (unit, 2-rank MPI, command line).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# One test per core: most tests are short command-line runs that spend much
# of their time starting processes and writing files. Arguments after the
# command are passed to ctest and override this, e.g. -j1 or -R unit.
ctest --test-dir build --output-on-failure -j"$(nproc)" "$@"
