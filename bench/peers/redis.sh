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

# redis_client SECONDS ARGS...: one run, bounded by SECONDS.
redis_client() {
  local secs="$1"
  shift
  run_client redis_bench "$((secs * 3 + 30))" --host 127.0.0.1 --port "$REDIS_PORT" \
    --size "$REDIS_SIZE" --duration-s "$secs" "$@"
}

# redis_row LABEL WORKLOAD CLIENT_ARGS...: one msgs/s row.
redis_row() {
  local label="$1" workload="$2" out
  shift 2
  out="$(redis_client "$BENCH_SECS" "$@")"
  row redis "$label" "$workload" "$(cut -d' ' -f1 <<<"$out")" msgs/s
}

# redis_latency_rows LABEL PREFIX WORKLOAD: the three percentile rows of a latency run.
redis_latency_rows() {
  local lat i=1 p
  lat="$(redis_client "$BENCH_LAT_SECS" --workload "$3" --rate "$BENCH_RATE" --count "$BENCH_LAT_N")"
  for p in p50 p99 p999; do
    row redis "$1" "$2 $p" "$(cut -s -d' ' -f$i <<<"$lat")" ms
    i=$((i + 1))
  done
}

redis_level() {
  local label="$1" n="$BENCH_N"
  redis_row "$label" "produce w1" --workload produce --window 1 --count "$BENCH_N1"
  redis_row "$label" "produce w1000" --workload produce --window 1000 --count "$n"
  redis_row "$label" "consume stream" --workload stream --count "$BENCH_STREAM_N"
  redis_row "$label" "consume queue" --workload consume --consumers 1 --window 100 --count "$n"
  redis_row "$label" "cycle 4c" --workload cycle --consumers 4 --window 100 --count "$n"
  redis_latency_rows "$label" latency latency
  redis_latency_rows "$label" "queue latency" qlatency
}

# peer_rows QUICK SIZE: the counts come from run.sh (BENCH_*).
peer_rows() {
  local fsync
  REDIS_SIZE="$2"
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
