#!/usr/bin/env bash
# Builds the SQS request-parser fuzz target (libFuzzer with ASan and UBSan, clang 14) and fuzzes
# it for a bounded time, starting from the seed corpus next to this script.
#
#   run.sh [seconds] [build dir]
#
# seconds defaults to $SQS_FUZZ_SECONDS, else 60. Without a build dir a temporary one is used
# and removed afterwards unless the fuzzer found something. Exits non-zero on any crash, leak,
# sanitizer report, timeout or broken invariant; the reproducer is written to the build dir as
# crash-*/leak-*/timeout-* and can be replayed with `<build dir>/request_fuzz <file>`.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/../../.." && pwd)"
seconds="${1:-${SQS_FUZZ_SECONDS:-60}}"
build_dir="${2:-}"
cxx="${SQS_FUZZ_CXX:-clang++-14}"

if ! [[ "$seconds" =~ ^[0-9]+$ ]] || [[ "$seconds" -eq 0 ]]; then
  echo "run.sh: seconds must be a positive integer, got '$seconds'" >&2
  exit 2
fi
if ! command -v "$cxx" >/dev/null; then
  echo "run.sh: $cxx not found (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi

temporary=0
if [[ -z "$build_dir" ]]; then
  build_dir="$(mktemp -d /tmp/sqs-request-fuzz.XXXXXX)"
  temporary=1
fi
mkdir -p "$build_dir/corpus"

# -fno-sanitize-recover: a UBSan report must fail the run, not just be printed.
"$cxx" -std=c++20 -g -O1 -fsanitize=fuzzer,address,undefined \
  -fno-sanitize-recover=all -I"$root" \
  "$root/tests/sqs/fuzz/request_fuzz.cc" "$root/protocol/sqs/request.cc" \
  -o "$build_dir/request_fuzz"

# New inputs go to the build dir's corpus; the checked-in seeds are only read.
status=0
"$build_dir/request_fuzz" "$build_dir/corpus" "$root/tests/sqs/fuzz/corpus" \
  -dict="$root/tests/sqs/fuzz/sqs.dict" \
  -max_total_time="$seconds" -max_len=16384 -timeout=10 -rss_limit_mb=2048 \
  -artifact_prefix="$build_dir/" -print_final_stats=1 || status=$?

if [[ $status -ne 0 ]]; then
  echo "run.sh: the fuzzer failed (exit $status); reproducers:" >&2
  ls -1 "$build_dir"/crash-* "$build_dir"/leak-* "$build_dir"/timeout-* \
    "$build_dir"/oom-* 2>/dev/null >&2 || true
  exit "$status"
fi
if [[ $temporary -eq 1 ]]; then
  rm -rf "$build_dir"
fi
echo "run.sh: no crash in ${seconds}s"
