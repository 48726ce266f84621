# shellcheck shell=bash
# Spool rows: spoold on 127.0.0.1, driven by spool-bench. Sourced by run.sh (see README.md).

SPOOL_PID=""
SPOOL_ADDR=""

# peer_start DATA_DIR [always|interval]
peer_start() {
  local dir="$1" fsync="${2:-always}" log="$1/spoold.log" i
  mkdir -p "$dir"
  # spoold refuses SPOOL_ variables that are not its settings, and run.sh exports SPOOL_BENCH.
  env -u SPOOL_BENCH "$SPOOLD" --data-dir "$dir/data" --grpc-listen 127.0.0.1:0 \
    --http-listen 127.0.0.1:0 --fsync "$fsync" --log-level info >"$log" 2>&1 &
  SPOOL_PID=$!
  track_pid "$SPOOL_PID"
  for ((i = 0; i < 300; i++)); do
    SPOOL_ADDR="$(sed -n 's/.*spoold ready: grpc=\([^ ]*\) .*/\1/p' "$log" | head -n 1)"
    if [ -n "$SPOOL_ADDR" ]; then return 0; fi
    if ! kill -0 "$SPOOL_PID" 2>/dev/null; then break; fi
    sleep 0.1
  done
  echo "spool: spoold did not get ready; its log:" >&2
  cat "$log" >&2
  return 1
}

peer_stop() {
  if [ -n "$SPOOL_PID" ]; then
    kill_wait "$SPOOL_PID" 15
    untrack_pid "$SPOOL_PID"
    SPOOL_PID=""
  fi
}

# spool_bench SECONDS TOPIC SUBCOMMAND ARGS...: runs spool-bench for at most SECONDS and
# prints its result line.
spool_bench() {
  local secs="$1" topic="$2"
  shift 2
  timeout -k 5 "$((secs * 3 + 30))" "$SPOOL_BENCH" --address "$SPOOL_ADDR" --topic "$topic" \
    --record-size "$SPOOL_SIZE" --duration "$secs" "$@" ||
    echo "spool: spool-bench $* exited with an error" >&2
}

# Prints the number before " msgs/s" (or " records/s").
rate_of() { sed -n 's/.* = \([0-9.]*\) \(msgs\|records\)\/s.*/\1/p' | head -n 1; }
# Prints percentile P (p50, p99, p999) of a latency line, in ms.
pct_ms() { sed -n "s/.* $1 \([0-9.]*\) us.*/\1/p" | head -n 1 | awk '{ printf "%.3f", $1 / 1000 }'; }

# latency_rows LABEL PREFIX OUTPUT: the three percentile rows of a latency run.
latency_rows() {
  local p
  for p in p50 p99 p999; do
    row spool "$1" "$2 $p" "$(pct_ms "$p" <<<"$3")" ms
  done
}

spool_level() {
  local label="$1" s="$BENCH_SECS" n="$BENCH_N" out
  out="$(spool_bench "$s" w1 produce --unary --batch 1 --inflight 1 --messages "$BENCH_N1")"
  row spool "$label" "produce w1" "$(rate_of <<<"$out")" msgs/s
  out="$(spool_bench "$s" w1000 produce --batch 1 --inflight 1000 --messages "$n")"
  row spool "$label" "produce w1000" "$(rate_of <<<"$out")" msgs/s
  out="$(spool_bench "$s" b100 produce --batch 100 --inflight 8 --messages "$n")"
  row spool "$label" "produce batch100" "$(rate_of <<<"$out")" msgs/s
  out="$(spool_bench "$s" rd read --messages "$BENCH_STREAM_N")"
  row spool "$label" "consume stream" "$(rate_of <<<"$out")" msgs/s
  out="$(spool_bench "$s" q1 queue-cycle --consumers 1 --batch 100 --messages "$n")"
  row spool "$label" "consume queue" "$(rate_of <<<"$out")" msgs/s
  out="$(spool_bench "$s" q4 queue-cycle --consumers 4 --batch 100 --messages "$n")"
  row spool "$label" "cycle 4c" "$(rate_of <<<"$out")" msgs/s
  # No peer has per-group FIFO in a work queue (README.md), so this row has no ratio.
  out="$(spool_bench "$s" f4 queue-cycle --consumers 4 --batch 100 --groups 64 --messages "$n")"
  row spool "$label" "fifo cycle 4c" "$(rate_of <<<"$out")" msgs/s
  out="$(spool_bench "$BENCH_LAT_SECS" lat latency --rate "$BENCH_RATE" --stream)"
  latency_rows "$label" latency "$out"
  out="$(spool_bench "$BENCH_LAT_SECS" qlat queue-latency --rate "$BENCH_RATE" --stream \
    --consumers 1)"
  latency_rows "$label" "queue latency" "$out"
}

# peer_rows QUICK SIZE: the counts come from run.sh (BENCH_*).
peer_rows() {
  SPOOL_SIZE="$2"
  local fsync
  for fsync in always interval; do
    peer_start "$WORK/data-spool/$fsync" "$fsync"
    if [ "$fsync" = always ]; then
      spool_level "durable: fsync always"
    else
      spool_level "relaxed: fsync interval 50ms"
    fi
    peer_stop
  done
}
