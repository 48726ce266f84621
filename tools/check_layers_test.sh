#!/usr/bin/env bash
# Checks that check_layers.sh accepts a clean tree and rejects an upward include and a
# RocksDB include outside storage/.
set -u
root=${1:-$(dirname "$0")/..}
checker="$root/tools/check_layers.sh"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp"/{common,storage,broker,protocol,client}
echo '#include "common/error.h"' >"$tmp/storage/ok.h"
echo '#include "storage/store.h"' >"$tmp/broker/ok.h"
echo '#include "spool/v1/admin.pb.h"' >"$tmp/client/ok.h"
echo '#include "spool/producer.h"' >>"$tmp/client/ok.h"
"$checker" "$tmp" >/dev/null || { echo "FAIL: a clean tree was rejected"; exit 1; }

echo '#include "broker/broker.h"' >"$tmp/storage/bad.h"
out=$("$checker" "$tmp") && { echo "FAIL: storage -> broker was accepted"; exit 1; }
grep -q 'storage/bad.h:1 includes "broker/...' <<<"$out" || { echo "FAIL: unclear report: $out"; exit 1; }
rm "$tmp/storage/bad.h"

echo '#include "spool/v1/admin.pb.h"' >"$tmp/broker/api.cc"
"$checker" "$tmp" >/dev/null && { echo "FAIL: generated API code in broker/ was accepted"; exit 1; }
rm "$tmp/broker/api.cc"

echo '#include "spool/client.h"' >"$tmp/protocol/uses_client.cc"
out=$("$checker" "$tmp") && { echo "FAIL: the client library in protocol/ was accepted"; exit 1; }
grep -q 'includes "client/...' <<<"$out" || { echo "FAIL: unclear report: $out"; exit 1; }
rm "$tmp/protocol/uses_client.cc"

echo '#include "broker/broker.h"' >"$tmp/client/deep.cc"
"$checker" "$tmp" >/dev/null && { echo "FAIL: client -> broker was accepted"; exit 1; }
rm "$tmp/client/deep.cc"

echo '#include <grpcpp/grpcpp.h>' >"$tmp/broker/rpc.cc"
"$checker" "$tmp" >/dev/null && { echo "FAIL: gRPC in broker/ was accepted"; exit 1; }
rm "$tmp/broker/rpc.cc"

echo '#include <rocksdb/db.h>' >"$tmp/broker/leak.cc"
"$checker" "$tmp" >/dev/null && { echo "FAIL: RocksDB in broker/ was accepted"; exit 1; }
echo "check_layers.sh: clean tree passes, violations fail"
