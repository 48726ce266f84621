#!/usr/bin/env bash
# Installs every Debian 12 package that building, testing and benchmarking Spool needs.
# Idempotent: packages already present are skipped, and `apt-get update` runs only when
# something has to be installed.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config git
  # libraries the code links against
  librocksdb-dev libboost-dev libspdlog-dev libfmt-dev
  libprotobuf-dev protobuf-compiler libgrpc++-dev protobuf-compiler-grpc
  libcli11-dev libyaml-cpp-dev nlohmann-json3-dev libssl-dev libsystemd-dev
  # tests and benchmarks
  libgtest-dev libgmock-dev libbenchmark-dev
  # the second-language client test: Python stubs generated from the .proto files
  python3 python3-grpcio python3-grpc-tools
  # systemd-analyze, to verify deploy/spoold.service; promtool, to check /metrics
  systemd prometheus
  # the SQS API's real clients (Debian's boto3 and AWS CLI speak the Query protocol) and
  # the request parsers' fuzz target (clang with libFuzzer)
  python3-boto3 awscli clang-14 libclang-rt-14-dev
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed'; then
    missing+=("$p")
  fi
done

# Node.js runs the AWS JavaScript SDK tests. A Node already on the machine (from any source)
# is used as it is: installing Debian's npm beside another Node's would conflict.
if ! command -v node >/dev/null 2>&1; then missing+=(nodejs); fi
if ! command -v npm >/dev/null 2>&1; then missing+=(npm); fi

if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then
    sudo_cmd=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# The JavaScript test client, pinned by its lock file, from the npm registry.
js_dir="$(dirname "$0")/../tests/sqs/js"
if [ -f "$js_dir/package-lock.json" ] &&
   { [ ! -d "$js_dir/node_modules" ] || [ "$js_dir/package-lock.json" -nt "$js_dir/node_modules" ]; }; then
  echo "install-deps: installing the JavaScript test client (npm ci)"
  npm ci --prefix "$js_dir" --no-audit --no-fund --loglevel=error
  touch "$js_dir/node_modules"
fi
