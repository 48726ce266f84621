# NATS JetStream peer for bench/peers/run.sh (sourced; see README.md).
#
# nats-server 2.9 (Debian 12) with JetStream and file storage:
#   nats-server -js -sd DATA_DIR -a 127.0.0.1 -p PORT
# 2.9 acknowledges a publish once the message is written to the file store, without an
# fsync (it has no sync_interval option yet), so its rows are labelled "relaxed".
# Client: nats_bench.c (libnats JetStream API).

NATS_PID=""
NATS_PORT=""
NATS_LABEL="relaxed: JetStream file storage, no fsync"

# peer_start DATA_DIR: starts nats-server on 127.0.0.1 with its store in DATA_DIR.
peer_start() {
  local dir="$1"
  mkdir -p "$dir"
  NATS_PORT="$(free_port)"
  nats-server -js -sd "$dir" -a 127.0.0.1 -p "$NATS_PORT" >"$dir/nats-server.log" 2>&1 &
  NATS_PID=$!
  track_pid "$NATS_PID"
  if ! wait_tcp "$NATS_PORT" 20; then
    tail -n 20 "$dir/nats-server.log" >&2 || true
    peer_stop
    return 1
  fi
}

peer_stop() {
  [ -n "$NATS_PID" ] || return 0
  kill_wait "$NATS_PID" 15
  untrack_pid "$NATS_PID"
  NATS_PID=""
}

# nats_client TIMEOUT ARGS...: prints "<value> <unit>" (or nothing on failure).
nats_client() {
  local secs="$1"
  shift
  run_client nats_bench "$secs" --host 127.0.0.1 --port "$NATS_PORT" "$@"
}

# nats_row WORKLOAD ARGS...: runs one throughput workload and prints its row.
nats_row() {
  local name="$1" value unit
  shift
  read -r value unit <<<"$(nats_client $((BENCH_SECS * 4 + 60)) --duration-s "$BENCH_SECS" "$@")"
  row nats "$NATS_LABEL" "$name" "${value:-FAILED}" "${unit:-msgs/s}"
}

# peer_rows QUICK SIZE: the counts come from run.sh (BENCH_*).
peer_rows() {
  local size="$2" n="$BENCH_N" p50 p99 p999 unit
  peer_start "$WORK/data-nats/js" || return 1
  nats_row "produce w1" --workload produce --window 1 --count "$BENCH_N1" --size "$size"
  nats_row "produce w1000" --workload produce --window 1000 --count "$n" --size "$size"
  nats_row "consume stream" --workload stream --window 1000 --count "$BENCH_STREAM_N" \
    --size "$size"
  nats_row "consume queue" --workload consume --window 1000 --count "$n" --size "$size"
  nats_row "cycle 4c" --workload cycle --consumers 4 --window 1000 --count "$n" --size "$size"
  # A push consumer that acks each message: a queue's delivery.
  read -r p50 p99 p999 unit <<<"$(nats_client $((BENCH_LAT_SECS * 4 + 60)) --workload latency \
    --rate "$BENCH_RATE" --count "$BENCH_LAT_N" --duration-s "$BENCH_LAT_SECS" --size "$size")"
  row nats "$NATS_LABEL" "queue latency p50" "${p50:-FAILED}" ms
  row nats "$NATS_LABEL" "queue latency p99" "${p99:-FAILED}" ms
  row nats "$NATS_LABEL" "queue latency p999" "${p999:-FAILED}" ms
  peer_stop
}
