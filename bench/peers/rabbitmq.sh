# RabbitMQ peer for bench/peers/run.sh (sourced; see README.md).
#
# RabbitMQ 3.10 (Debian 12) as a private node: its own node name, data, logs, config,
# Erlang cookie (HOME) and epmd on free ports, all on 127.0.0.1, no plugins. A system-wide
# instance, if any, is never touched. Rows (client: rabbitmq_bench.c, librabbitmq), all with
# persistent messages and publisher confirms:
#   durable: a quorum queue (its Raft log is fdatasync'ed before the confirm);
#   durable: a classic durable queue (the message store fsyncs before the confirm; with a
#            window of 1, strace shows one fsync per message);
#   relaxed: a classic queue that is not durable, with transient messages (confirmed
#            without touching the disk; lost when the node restarts), every queue workload;
#   relaxed: a stream queue, for the produce rows and "consume stream" (a stream confirms
#            without an fsync per message: strace shows far fewer fdatasync calls than
#            messages).
# RabbitMQ has no native batch publish over AMQP 0-9-1, so there is no "produce batch100" row.

RMQ_PID=""
RMQ_EPMD_PID=""
RMQ_NODE=""
RMQ_PORT=""
RMQ_ENV=()
RMQ_LIB=/usr/lib/rabbitmq/bin

# rmq_ctl ARGS...: rabbitmqctl against our node, bounded in time.
rmq_ctl() {
  timeout -k 5 60 env "${RMQ_ENV[@]}" "$RMQ_LIB/rabbitmqctl" -n "$RMQ_NODE" "$@"
}

# peer_start DATA_DIR: starts a private RabbitMQ node with its data in DATA_DIR.
peer_start() {
  local dir="$1" epmd_port dist_port i
  mkdir -p "$dir/home" "$dir/mnesia" "$dir/log"
  RMQ_PORT="$(free_port)"
  epmd_port="$(free_port)"
  dist_port="$(free_port)"
  RMQ_NODE="spoolbench-$$@localhost"
  printf 'listeners.tcp.1 = 127.0.0.1:%s\nloopback_users.guest = true\n' "$RMQ_PORT" \
    >"$dir/rabbitmq.conf"
  echo '[].' >"$dir/enabled_plugins"
  : >"$dir/rabbitmq-env.conf"
  RMQ_ENV=(
    HOME="$dir/home"
    ERL_EPMD_PORT="$epmd_port"
    ERL_EPMD_ADDRESS=127.0.0.1
    RABBITMQ_NODENAME="$RMQ_NODE"
    RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
    RABBITMQ_NODE_PORT="$RMQ_PORT"
    RABBITMQ_DIST_PORT="$dist_port"
    RABBITMQ_CONF_ENV_FILE="$dir/rabbitmq-env.conf"
    RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf"
    RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
    RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
    RABBITMQ_MNESIA_BASE="$dir/mnesia"
    RABBITMQ_LOG_BASE="$dir/log"
    RABBITMQ_PID_FILE="$dir/rabbitmq.pid"
    RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
  )
  # Our own epmd first, so that the node does not start a shared daemon on 4369.
  env "${RMQ_ENV[@]}" epmd -port "$epmd_port" -address 127.0.0.1 >"$dir/log/epmd.log" 2>&1 &
  RMQ_EPMD_PID=$!
  track_pid "$RMQ_EPMD_PID"
  if ! wait_tcp "$epmd_port" 10; then
    peer_stop
    return 1
  fi
  # setsid: the node (a shell script, then the Erlang VM and its helpers) gets a process
  # group of its own, whose id is the PID recorded here.
  setsid env "${RMQ_ENV[@]}" "$RMQ_LIB/rabbitmq-server" >"$dir/log/server.out" 2>&1 &
  RMQ_PID=$!
  track_pid "$RMQ_PID"
  for ((i = 0; i < 12; i++)); do
    if rmq_ctl await_startup --timeout 10 >/dev/null 2>&1; then break; fi
    kill -0 "$RMQ_PID" 2>/dev/null || break
    sleep 1
  done
  if ! wait_tcp "$RMQ_PORT" 10; then
    tail -n 30 "$dir/log/server.out" >&2 || true
    peer_stop
    return 1
  fi
}

peer_stop() {
  local i
  if [ -n "$RMQ_PID" ]; then
    if kill -0 "$RMQ_PID" 2>/dev/null; then
      rmq_ctl stop >/dev/null 2>&1 || true
    fi
    kill_wait "$RMQ_PID" 20
    # whatever the VM left in the group started above (helpers it spawned)
    if kill -0 -- "-$RMQ_PID" 2>/dev/null; then
      kill -TERM -- "-$RMQ_PID" 2>/dev/null || true
      for ((i = 0; i < 50; i++)); do
        kill -0 -- "-$RMQ_PID" 2>/dev/null || break
        sleep 0.1
      done
      kill -KILL -- "-$RMQ_PID" 2>/dev/null || true
    fi
    untrack_pid "$RMQ_PID"
    RMQ_PID=""
  fi
  if [ -n "$RMQ_EPMD_PID" ]; then
    kill_wait "$RMQ_EPMD_PID" 10
    untrack_pid "$RMQ_EPMD_PID"
    RMQ_EPMD_PID=""
  fi
}

# rmq_run SECONDS ARGS...: one run of rabbitmq_bench, bounded by SECONDS; prints its result.
rmq_run() {
  local secs="$1"
  shift
  run_client rabbitmq_bench $((secs * 4 + 60)) --host 127.0.0.1 --port "$RMQ_PORT" \
    --duration-s "$secs" "$@"
}

# rmq_row LABEL WORKLOAD ARGS...: one msgs/s row.
rmq_row() {
  local label="$1" name="$2" value unit
  shift 2
  read -r value unit <<<"$(rmq_run "$BENCH_SECS" "$@")"
  row rabbitmq "$label" "$name" "${value:-FAILED}" "${unit:-msgs/s}"
}

# rmq_rows SIZE QUEUE_TYPE LABEL: every workload against one queue type.
rmq_rows() {
  local size="$1" qtype="$2" label="$3" n="$BENCH_N" p50 p99 p999 unit
  local common=(--queue-type "$qtype" --size "$size")
  rmq_row "$label" "produce w1" "${common[@]}" --workload produce --window 1 --count "$BENCH_N1"
  rmq_row "$label" "produce w1000" "${common[@]}" --workload produce --window 1000 --count "$n"
  rmq_row "$label" "consume queue" "${common[@]}" --workload consume --window 1000 --count "$n"
  rmq_row "$label" "cycle 4c" "${common[@]}" --workload cycle --consumers 4 --window 1000 \
    --count "$n"
  # basic.consume and a basic.ack per delivery: a queue's delivery.
  read -r p50 p99 p999 unit <<<"$(rmq_run "$BENCH_LAT_SECS" "${common[@]}" --workload latency \
    --rate "$BENCH_RATE" --count "$BENCH_LAT_N")"
  row rabbitmq "$label" "queue latency p50" "${p50:-FAILED}" ms
  row rabbitmq "$label" "queue latency p99" "${p99:-FAILED}" ms
  row rabbitmq "$label" "queue latency p999" "${p999:-FAILED}" ms
}

# peer_rows QUICK SIZE: the counts come from run.sh (BENCH_*).
peer_rows() {
  local size="$2" relaxed="relaxed: stream queue, publisher confirms, no fsync per message"
  local stream=(--queue-type stream --size "$size")
  peer_start "$WORK/data-rabbitmq/node" || return 1
  rmq_rows "$size" quorum "durable: quorum queue, persistent, publisher confirms"
  rmq_rows "$size" classic "durable: classic durable queue, persistent, publisher confirms"
  rmq_rows "$size" transient \
    "relaxed: classic queue, transient messages, publisher confirms, lost on a restart"
  # A stream queue confirms without an fsync per message: RabbitMQ's relaxed produce rows.
  rmq_row "$relaxed" "produce w1" "${stream[@]}" --workload produce --window 1 --count "$BENCH_N1"
  rmq_row "$relaxed" "produce w1000" "${stream[@]}" --workload produce --window 1000 \
    --count "$BENCH_N"
  rmq_row "$relaxed" "consume stream" "${stream[@]}" --workload stream --window 1000 \
    --count "$BENCH_STREAM_N"
  peer_stop
}
