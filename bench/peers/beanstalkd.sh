# shellcheck shell=bash
# beanstalkd rows: beanstalkd with its binlog on 127.0.0.1, driven by beanstalkd_bench (text
# protocol). Sourced by run.sh (see README.md).

BEANSTALKD_PID=""
BEANSTALKD_PORT=""

# peer_start DATA_DIR [FSYNC_MS]: -f0 fsyncs every write, -f1000 at most once a second.
peer_start() {
  local dir="$1" fsync_ms="${2:-0}"
  mkdir -p "$dir"
  BEANSTALKD_PORT="$(free_port)"
  beanstalkd -l 127.0.0.1 -p "$BEANSTALKD_PORT" -b "$dir" -f "$fsync_ms" \
    >"$dir/../beanstalkd-$fsync_ms.log" 2>&1 &
  BEANSTALKD_PID=$!
  track_pid "$BEANSTALKD_PID"
  wait_tcp "$BEANSTALKD_PORT" 20
}

peer_stop() {
  if [ -n "$BEANSTALKD_PID" ]; then
    kill_wait "$BEANSTALKD_PID" 15
    untrack_pid "$BEANSTALKD_PID"
    BEANSTALKD_PID=""
  fi
}

# beanstalkd_client SECONDS ARGS...: one run, bounded by SECONDS.
beanstalkd_client() {
  local secs="$1"
  shift
  run_client beanstalkd_bench "$((secs * 3 + 30))" --host 127.0.0.1 \
    --port "$BEANSTALKD_PORT" --size "$BEANSTALKD_SIZE" --duration-s "$secs" "$@"
}

# beanstalkd_row LABEL WORKLOAD CLIENT_ARGS...: one msgs/s row.
beanstalkd_row() {
  local label="$1" workload="$2" out
  shift 2
  out="$(beanstalkd_client "$BENCH_SECS" "$@")"
  row beanstalkd "$label" "$workload" "$(cut -d' ' -f1 <<<"$out")" msgs/s
}

beanstalkd_level() {
  local label="$1" n="$BENCH_N" lat
  beanstalkd_row "$label" "produce w1" --workload produce --window 1 --count "$BENCH_N1"
  beanstalkd_row "$label" "produce w1000" --workload produce --window 1000 --count "$n"
  beanstalkd_row "$label" "consume queue" --workload consume --consumers 1 --count "$n"
  beanstalkd_row "$label" "cycle 4c" --workload cycle --consumers 4 --count "$n"
  # put, then reserve + delete: a queue's delivery (beanstalkd has no streams).
  lat="$(beanstalkd_client "$BENCH_LAT_SECS" --workload latency --rate "$BENCH_RATE" \
    --count "$BENCH_LAT_N")"
  row beanstalkd "$label" "queue latency p50" "$(cut -s -d' ' -f1 <<<"$lat")" ms
  row beanstalkd "$label" "queue latency p99" "$(cut -s -d' ' -f2 <<<"$lat")" ms
  row beanstalkd "$label" "queue latency p999" "$(cut -s -d' ' -f3 <<<"$lat")" ms
}

# peer_rows QUICK SIZE: the counts come from run.sh (BENCH_*).
peer_rows() {
  local fsync_ms
  BEANSTALKD_SIZE="$2"
  for fsync_ms in 0 1000; do
    peer_start "$WORK/data-beanstalkd/f$fsync_ms" "$fsync_ms"
    if [ "$fsync_ms" = 0 ]; then
      beanstalkd_level "durable: binlog -f0"
    else
      beanstalkd_level "relaxed: binlog -f1000"
    fi
    peer_stop
  done
}
