#!/usr/bin/env bash
# Fails when a folder includes a project header from a layer it may not use.
#   common <- storage <- broker <- protocol <- server;  proto <- protocol, client
# Also fails when a RocksDB header is included outside storage/ (RocksDB types never leave it)
# and when gRPC or protobuf is included by common/, storage/ or broker/.
# usage: check_layers.sh [ROOT]
set -u
root=${1:-$(dirname "$0")/..}
declare -A allowed=(
  [common]="common"
  [storage]="common storage"
  [broker]="common storage broker"
  [proto]="proto"
  [protocol]="common storage broker proto protocol"
  [server]="common storage broker proto protocol server"
  [client]="proto client"
)
status=0
for folder in "${!allowed[@]}"; do
  [ -d "$root/$folder" ] || continue
  while IFS=: read -r file line text; do
    target=$(sed -E 's/^[[:space:]]*#[[:space:]]*include[[:space:]]*"([^/"]+)\/.*/\1/' <<<"$text")
    # Generated API headers are included as "spool/v1/...": they belong to proto. The
    # client's public headers are the other "spool/..." ones.
    if [ "$target" = spool ]; then
      if [[ "$text" == *'"spool/v1/'* ]]; then target=proto; else target=client; fi
    fi
    if [[ " ${allowed[$folder]} " != *" $target "* ]]; then
      echo "layering: $file:$line includes \"$target/...\", which $folder/ may not use"
      status=1
    fi
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*"[^/"]+/' "$root/$folder" \
             --include='*.h' --include='*.cc' 2>/dev/null)
  if [ "$folder" != storage ]; then
    while IFS= read -r hit; do
      echo "layering: $hit includes RocksDB outside storage/"
      status=1
    done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<rocksdb/' "$root/$folder" \
               --include='*.h' --include='*.cc' 2>/dev/null)
  fi
done
# The domain never knows that gRPC or protobuf exist.
for folder in common storage broker; do
  [ -d "$root/$folder" ] || continue
  while IFS= read -r hit; do
    echo "layering: $hit includes gRPC/protobuf below protocol/"
    status=1
  done < <(grep -rnE '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(grpc|grpcpp|google/protobuf)/' \
             "$root/$folder" --include='*.h' --include='*.cc' 2>/dev/null)
done
exit $status
