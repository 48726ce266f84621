#!/usr/bin/env bash
# Installs what is missing, builds (Release) and runs spoold in the foreground with its
# embedded defaults (data in ./data). Extra arguments go to spoold, e.g. `--log-level debug`.
set -euo pipefail
cd "$(dirname "$0")/.."

./deploy/install-deps.sh
cmake --preset release >/dev/null
cmake --build --preset release --target spoold
exec ./build/release/server/spoold "$@"
