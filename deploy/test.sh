#!/usr/bin/env bash
# Installs what is missing, builds (Release) and runs the whole test suite with ctest.
# Extra arguments go to ctest, e.g. `./deploy/test.sh -L unit`.
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release
ctest --preset release --timeout 600 "$@"
