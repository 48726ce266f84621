#!/usr/bin/env bash
# Runs the same workloads against spoold and the peer brokers on loopback and writes a
# markdown table of the figures and their ratios to Spool. See bench/peers/README.md.
set -euo pipefail

usage() {
  echo "usage: $0 [--quick] [--size BYTES] [--out FILE] [--peers \"spool redis beanstalkd nats rabbitmq\"]" >&2
  exit 2
}

PEERS_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
ROOT="$(cd "$PEERS_DIR/../.." && pwd)"
QUICK=0
SIZE=256
OUT="$PEERS_DIR/results-$(date +%Y-%m-%d).md"
PEERS="spool redis beanstalkd nats rabbitmq"
while [ $# -gt 0 ]; do
  case "$1" in
    --quick) QUICK=1 ;;
    --size) SIZE="${2:?}"; shift ;;
    --out) OUT="${2:?}"; shift ;;
    --peers) PEERS="${2:?}"; shift ;;
    -h|--help) usage ;;
    *) echo "unknown argument: $1" >&2; usage ;;
  esac
  shift
done
case "$SIZE" in ''|*[!0-9]*) echo "--size must be a number of bytes" >&2; exit 2 ;; esac

export ROOT PEERS_DIR QUICK SIZE

# Every peer runs each workload with the same counts and the same time bound (README.md,
# "Counts"): N1 messages one at a time, N for the other produce, queue and cycle rows,
# STREAM_N for the stream read, LAT_N for latency at RATE msgs/s; SECS bounds each run.
if [ "$QUICK" = 1 ]; then
  BENCH_N1=1000 BENCH_N=5000 BENCH_STREAM_N=10000 BENCH_LAT_N=10000 BENCH_SECS=5
else
  BENCH_N1=20000 BENCH_N=500000 BENCH_STREAM_N=1000000 BENCH_LAT_N=100000 BENCH_SECS=30
fi
BENCH_RATE=10000
BENCH_LAT_SECS=$((BENCH_LAT_N / BENCH_RATE))
export BENCH_N1 BENCH_N BENCH_STREAM_N BENCH_LAT_N BENCH_LAT_SECS BENCH_RATE BENCH_SECS
export SPOOLD="${SPOOLD:-$ROOT/build/release/server/spoold}"
export SPOOL_BENCH="${SPOOL_BENCH:-$ROOT/build/release/bench/spool-bench}"

# --- packages -------------------------------------------------------------------------------
packages=(redis-server beanstalkd libhiredis-dev nats-server libnats-dev rabbitmq-server
  librabbitmq-dev)
missing=()
for p in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q '^install ok installed'; then
    missing+=("$p")
  fi
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "peers: installing ${missing[*]}" >&2
  sudo_cmd=()
  if [ "$(id -u)" -ne 0 ]; then sudo_cmd=(sudo); fi
  export DEBIAN_FRONTEND=noninteractive
  "${sudo_cmd[@]}" apt-get update -q >&2
  "${sudo_cmd[@]}" apt-get install -y -q --no-install-recommends "${missing[@]}" >&2
  # A server package just installed starts a system-wide service; this script runs its own
  # instances. Services that were installed before are left as they are.
  started=()
  for p in "${missing[@]}"; do
    case "$p" in redis-server | rabbitmq-server | beanstalkd | nats-server) started+=("$p") ;; esac
  done
  if [ ${#started[@]} -gt 0 ]; then
    "${sudo_cmd[@]}" systemctl disable --now "${started[@]}" >/dev/null 2>&1 || true
  fi
fi

# --- Spool itself ---------------------------------------------------------------------------
# On a fresh clone, build what the Spool rows run (the Release preset, as deploy/run.sh does).
if [[ " $PEERS " == *" spool "* ]] && { [ ! -x "$SPOOLD" ] || [ ! -x "$SPOOL_BENCH" ]; }; then
  echo "peers: building spoold and spool-bench (Release)" >&2
  "$ROOT/deploy/install-deps.sh" >&2
  (cd "$ROOT" && cmake --preset release >&2 && cmake --build --preset release --target spoold spool-bench >&2)
fi

# --- temp dirs, cleanup ---------------------------------------------------------------------
WORK="$(mktemp -d "${TMPDIR:-/tmp}/spool-peers.XXXXXX")"
BUILD="$WORK/build"
mkdir -p "$BUILD"
RUN_PIDS_FILE="$WORK/pids"
: >"$RUN_PIDS_FILE"
export WORK BUILD RUN_PIDS_FILE

# Kills one PID this script started: SIGTERM, bounded wait, then SIGKILL.
kill_wait() {
  local pid="$1" secs="${2:-15}" i
  kill -0 "$pid" 2>/dev/null || return 0
  kill -TERM "$pid" 2>/dev/null || true
  for ((i = 0; i < secs * 10; i++)); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  echo "peers: pid $pid did not exit after ${secs}s, killing it" >&2
  kill -KILL "$pid" 2>/dev/null || true
}
track_pid() { echo "$1" >>"$RUN_PIDS_FILE"; }
untrack_pid() { sed -i "/^$1\$/d" "$RUN_PIDS_FILE"; }

cleanup() {
  local rc=$? pid
  # First the peer's shell, so it cannot start another server, then every server still listed.
  if [ -s "$WORK/peer-shell.pid" ]; then kill_wait "$(cat "$WORK/peer-shell.pid")" 5; fi
  while read -r pid; do
    [ -n "$pid" ] && kill_wait "$pid" 10
  done <"$RUN_PIDS_FILE"
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
# Waits until 127.0.0.1:PORT accepts a connection.
wait_tcp() {
  local port="$1" secs="${2:-20}" i
  for ((i = 0; i < secs * 10; i++)); do
    if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "peers: nothing accepts connections on 127.0.0.1:$port after ${secs}s" >&2
  return 1
}
row() { echo "ROW|$1|$2|$3|$4|$5"; }
# run_client NAME TIMEOUT ARGS...: runs a built client, prints the fields after RESULT.
run_client() {
  local name="$1" secs="$2" out
  shift 2
  if ! out="$(timeout -k 5 "$secs" "$BUILD/$name" "$@")"; then
    echo "peers: $name $* failed" >&2
    return 0
  fi
  sed -n 's/^RESULT //p' <<<"$out" | head -n 1
}
export -f kill_wait track_pid untrack_pid free_port wait_tcp row run_client

# --- build the C clients --------------------------------------------------------------------
declare -A libs=([redis]=hiredis [nats]=libnats [rabbitmq]=librabbitmq [beanstalkd]="")
for peer in $PEERS; do
  src="$PEERS_DIR/${peer}_bench.c"
  [ -f "$src" ] || continue
  flags=()
  if [ -n "${libs[$peer]:-}" ]; then
    read -r -a flags <<<"$(pkg-config --cflags --libs "${libs[$peer]}")"
  fi
  echo "peers: building ${peer}_bench" >&2
  gcc -O2 -Wall -Wextra -pthread -o "$BUILD/${peer}_bench" "$src" "${flags[@]}" -lm
done

# --- run ------------------------------------------------------------------------------------
ROWS="$WORK/rows"
: >"$ROWS"
failed=0
for peer in $PEERS; do
  script="$PEERS_DIR/$peer.sh"
  if [ ! -f "$script" ]; then
    echo "peers: no $script" >&2
    failed=1
    continue
  fi
  echo "peers: running $peer" >&2
  mkdir -p "$WORK/data-$peer"
  # A new shell per peer: its functions and variables stay its own, errexit holds inside it
  # (a subshell tested by `if` would ignore it), and its server is stopped even when a
  # workload fails.
  # shellcheck disable=SC2016
  # In the background with `wait`, so that a signal to this script is handled at once.
  {
    rc=0
    bash -euo pipefail -c '
      echo $$ >"$WORK/peer-shell.pid"
      source "$1"
      trap "peer_stop || true" EXIT
      peer_rows "$2" "$3"
    ' "peers-$peer" "$script" "$QUICK" "$SIZE" || rc=$?
    echo "$rc" >"$WORK/peer-rc"
  } | tee -a "$ROWS" | sed 's/^/peers: /' >&2 &
  wait $! || true
  if [ "$(cat "$WORK/peer-rc" 2>/dev/null)" != 0 ]; then
    echo "peers: $peer ended with an error" >&2
    failed=1
  fi
  rm -f "$WORK/peer-rc"
  rm -f "$WORK/peer-shell.pid"
  rm -rf "$WORK/data-$peer"
done

# The rows each peer's script writes (all its durability levels): a row that goes missing
# fails the run as one without a number does. A change to a script's workloads changes this.
declare -A expected_rows=([spool]=26 [redis]=22 [beanstalkd]=14 [nats]=8 [rabbitmq]=24)
for peer in $PEERS; do
  want="${expected_rows[$peer]:-}"
  got="$(grep -c "^ROW|$peer|" "$ROWS" || true)"
  if [ -n "$want" ] && [ "$got" != "$want" ]; then
    echo "peers: $peer wrote $got rows, expected $want" >&2
    failed=1
  fi
done

# --- table ----------------------------------------------------------------------------------
table="$WORK/table.md"
{
  echo "Spool and peer brokers, $(date -u '+%Y-%m-%d %H:%M UTC'), $(nproc) cores, record ${SIZE} B$([ "$QUICK" = 1 ] && echo ', quick run (figures not meaningful)')."
  echo
  echo "Versions: $(dpkg-query -W -f='${Package} ${Version}, ' redis-server beanstalkd nats-server \
    rabbitmq-server 2>/dev/null)spoold from $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')."
  echo
  echo "\"Spool x\" is Spool's figure over the peer's for msgs/s and the peer's over Spool's for"
  echo "latency, against Spool's row of the same workload and durability class: above 1 Spool is"
  echo "better."
  echo
  echo "| peer | durability | workload | result | Spool x |"
  echo "|---|---|---|---|---|"
  awk -F'|' '
    function num(v) { return v ~ /^[0-9]+(\.[0-9]+)?([eE][-+]?[0-9]+)?$/ }
    function cls(l) { sub(/:.*/, "", l); return l }
    $1 == "ROW" && NF == 6 {
      n++; peer[n] = $2; label[n] = $3; work[n] = $4; val[n] = $5; unit[n] = $6
      if ($2 == "spool" && num($5)) spool[cls($3) SUBSEP $4] = $5
    }
    END {
      for (i = 1; i <= n; i++) {
        v = val[i]; r = ""
        if (!num(v)) { v = "FAILED"; bad = 1 }
        else {
          v = (unit[i] == "ms") ? sprintf("%.2f %s", v, unit[i]) : sprintf("%.0f %s", v, unit[i])
          k = cls(label[i]) SUBSEP work[i]
          if (peer[i] != "spool" && (k in spool) && val[i] > 0 && spool[k] > 0)
            r = sprintf("%.2f", unit[i] == "ms" ? val[i] / spool[k] : spool[k] / val[i])
        }
        printf "| %s | %s | %s | %s | %s |\n", peer[i], label[i], work[i], v, r
      }
      exit bad
    }' "$ROWS" || failed=1
} >"$table"

if [ ! -s "$ROWS" ]; then
  echo "peers: no rows" >&2
  failed=1
fi
cat "$table"
mkdir -p "$(dirname "$OUT")"
cp "$table" "$OUT"
echo "peers: table written to $OUT" >&2
if [ "$failed" -ne 0 ]; then
  echo "peers: FAILED: a peer ended with an error, a row has no number or rows are missing" \
    "(see above)" >&2
  exit 1
fi
