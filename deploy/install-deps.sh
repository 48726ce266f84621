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
)

missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "install-deps: installing ${missing[*]}"
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  sudo_cmd=(sudo)
fi
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -q
"${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}"
