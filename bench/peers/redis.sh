# shellcheck shell=bash
# Redis 7 Streams rows: redis-server on 127.0.0.1, driven by redis_bench (hiredis).
# Sourced by run.sh (see README.md).

REDIS_PID=""
REDIS_PORT=""

# peer_start DATA_DIR [always|everysec]
peer_start() {
  local dir="$1" fsync="${2:-always}"
  mkdir -p "$dir"
  REDIS_PORT="$(free_port)"
  redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$dir" --daemonize no \
    --appendonly yes --appendfsync "$fsync" --save "" --protected-mode yes \
    --logfile "$dir/redis.log" &
  REDIS_PID=$!
  track_pid "$REDIS_PID"
  wait_tcp "$REDIS_PORT" 20
}

peer_stop() {
  if [ -n "$REDIS_PID" ]; then
    kill_wait "$REDIS_PID" 15
    untrack_pid "$REDIS_PID"
    REDIS_PID=""
  fi
}

redis_client() {
  run_client redis_bench "$((REDIS_SECS * 3 + 30))" --host 127.0.0.1 --port "$REDIS_PORT" \
    --size "$REDIS_SIZE" --duration-s "$REDIS_SECS" "$@"
}

# redis_row LABEL WORKLOAD CLIENT_ARGS...: one msgs/s row.
redis_row() {
  local label="$1" workload="$2" out
  shift 2
  out="$(redis_client "$@")"
  row redis "$label" "$workload" "$(cut -d' ' -f1 <<<"$out")" msgs/s
}

redis_level() {
  local label="$1" lat
  redis_row "$label" "produce w1" --workload produce --window 1 --count "$REDIS_N1"
  redis_row "$label" "produce w1000" --workload produce --window 1000 --count "$REDIS_N"
  redis_row "$label" "consume stream" --workload stream --count "$REDIS_N"
  redis_row "$label" "consume queue" --workload consume --consumers 1 --window 100 \
    --count "$REDIS_N"
  redis_row "$label" "cycle 4c" --workload cycle --consumers 4 --window 100 --count "$REDIS_N"
  lat="$(redis_client --workload latency --rate 10000 --count "$REDIS_N")"
  row redis "$label" "latency p50" "$(cut -s -d' ' -f1 <<<"$lat")" ms
  row redis "$label" "latency p99" "$(cut -s -d' ' -f2 <<<"$lat")" ms
  row redis "$label" "latency p999" "$(cut -s -d' ' -f3 <<<"$lat")" ms
}

peer_rows() {
  local quick="$1" fsync
  REDIS_SIZE="$2"
  if [ "$quick" = 1 ]; then
    REDIS_SECS=1 REDIS_N=10000 REDIS_N1=2000
  else
    REDIS_SECS=10 REDIS_N=1000000 REDIS_N1=100000
  fi
  for fsync in always everysec; do
    peer_start "$WORK/data-redis/$fsync" "$fsync"
    if [ "$fsync" = always ]; then
      redis_level "durable: appendfsync always"
    else
      redis_level "relaxed: appendfsync everysec"
    fi
    peer_stop
  done
}
