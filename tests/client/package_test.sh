#!/usr/bin/env bash
# Installs the client package from a build tree into a temporary prefix, builds
# client/examples against it with find_package(spool), and runs the example against a real
# spoold on 127.0.0.1 port 0.
# usage: package_test.sh BUILD_DIR SOURCE_DIR SPOOLD
set -euo pipefail
build_dir=$1 source_dir=$2 spoold=$3
tmp=$(mktemp -d)
spoold_pid=
cleanup() {
  [ -n "$spoold_pid" ] && kill "$spoold_pid" 2>/dev/null && wait "$spoold_pid" 2>/dev/null
  rm -rf "$tmp"
}
trap cleanup EXIT

cmake --install "$build_dir" --prefix "$tmp/prefix" --component client >/dev/null
test -f "$tmp/prefix/lib/cmake/spool/spoolConfig.cmake" || { echo "FAIL: no package config"; exit 1; }
test -f "$tmp/prefix/include/spool/producer.h" || { echo "FAIL: client headers missing"; exit 1; }
test -f "$tmp/prefix/include/spool/queue.h" || { echo "FAIL: queue client header missing"; exit 1; }
test -f "$tmp/prefix/include/spool/v1/queue.grpc.pb.h" || { echo "FAIL: queue API headers missing"; exit 1; }
test -f "$tmp/prefix/include/spool/v1/publish.grpc.pb.h" || { echo "FAIL: API headers missing"; exit 1; }

launcher=()
command -v ccache >/dev/null && launcher=(-DCMAKE_CXX_COMPILER_LAUNCHER=ccache)
cmake -S "$source_dir/client/examples" -B "$tmp/build" -G Ninja \
  -DCMAKE_PREFIX_PATH="$tmp/prefix" -DCMAKE_BUILD_TYPE=Release "${launcher[@]}" >/dev/null
cmake --build "$tmp/build" >/dev/null

"$spoold" --data-dir "$tmp/data" --grpc-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  >"$tmp/spoold.log" 2>&1 &
spoold_pid=$!
address=
for _ in $(seq 1 300); do
  address=$(sed -nE 's/.*spoold ready: grpc=([^ ]+).*/\1/p' "$tmp/spoold.log")
  [ -n "$address" ] && break
  kill -0 "$spoold_pid" 2>/dev/null || break
  sleep 0.1
done
[ -n "$address" ] || { echo "FAIL: spoold did not start"; cat "$tmp/spoold.log"; exit 1; }

output=$(timeout 60 "$tmp/build/produce_and_read" "$address" example)
echo "$output"
grep -q '^read 10 records$' <<<"$output" || { echo "FAIL: the example did not read back 10 records"; exit 1; }
echo "package_test: find_package(spool) builds and runs the example"
