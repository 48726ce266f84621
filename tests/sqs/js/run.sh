#!/usr/bin/env bash
# Runs the @aws-sdk/client-sqs suites against the spoold binary given as the first argument.
# The SDK comes from package-lock.json: install it first with `npm ci --prefix tests/sqs/js`.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

if [[ $# -lt 1 ]]; then
  echo "usage: $0 PATH_TO_SPOOLD" >&2
  exit 2
fi
if [[ ! -f "$1" || ! -x "$1" ]]; then
  echo "run.sh: $1 is not an executable spoold" >&2
  exit 2
fi
# Absolute, because the suites run from this directory.
spoold="$(cd "$(dirname "$1")" && pwd)/$(basename "$1")"
if ! command -v node >/dev/null 2>&1; then
  echo "run.sh: node is not installed (Debian: apt-get install nodejs npm)" >&2
  exit 1
fi
if [[ ! -d "$here/node_modules/@aws-sdk/client-sqs" ]]; then
  echo "run.sh: $here/node_modules is missing; install the SDK with: npm ci --prefix tests/sqs/js" >&2
  exit 1
fi

cd "$here"
# Explicit file names: how node --test expands a directory differs between Node 18 and 22.
SPOOLD="$spoold" exec node --test ./*.test.mjs
