#!/bin/bash
# Where a transaction's CPU goes, pooler against pgbouncer, in one sitting
# with alternating rounds: tps, user and system µs per transaction (from
# /proc/PID/stat), and syscalls per transaction counted by `perf stat` on
# the syscall tracepoints (less slowdown than strace, but the tracepoints
# add to system time: NOPERF=1 measures the CPU split alone).
#
#   benches/scripts/cpu-split.sh BIN PG_PORT [CLIENTS] [SECONDS] [ROUNDS] [PROTOCOL] [THREADS...]
#   e.g. benches/scripts/cpu-split.sh target/release/pooler 55432 16 8 3 extended 0 1
#
# THREADS: one pooler per value of `server.worker_threads` (default: 0).
# Needs pgbench, pgbouncer and perf; the database `postgres` initialised
# with `pgbench -i`, reachable as user postgres without a password; run as
# root (pgbouncer is started as the postgres OS user). Ports 6511-6520.
set -u
BIN=$1; PG=$2; C=${3:-16}; T=${4:-8}; R=${5:-3}; M=${6:-extended}
shift $(( $# < 6 ? $# : 6 )); THREADS=("${@:-0}")
export PATH=/usr/lib/postgresql/15/bin:$PATH
W=$(mktemp -d); chmod 755 "$W"; chown postgres "$W"
PIDS=()
trap 'kill ${PIDS[*]} 2>/dev/null; rm -rf "$W"' EXIT
TARGETS=()
port=6511
for th in "${THREADS[@]}"; do
cat > $W/p$port.toml <<TOML
[server]
listen = "127.0.0.1:$port"
max_client_connections = 2000
worker_threads = $th
[pool]
mode = "transaction"
size = 20
[auth]
method = "trust"
[[nodes]]
host = "127.0.0.1"
port = $PG
TOML
  $BIN --config $W/p$port.toml >/dev/null 2>$W/p$port.log & PIDS+=($!)
  TARGETS+=("pooler-t$th:$port:$!")
  port=$((port+1))
done
. "$(dirname "$0")/common.sh"
start_pgbouncer "$W" 6520 "$PG"; BP=$BOUNCER_PID; PIDS+=($BP)
TARGETS+=("pgbouncer:6520:$BP")
TICK=$(getconf CLK_TCK)
EVENTS=syscalls:sys_enter_sendto,syscalls:sys_enter_recvfrom,syscalls:sys_enter_epoll_wait,syscalls:sys_enter_futex,syscalls:sys_enter_read,syscalls:sys_enter_write,syscalls:sys_enter_writev,syscalls:sys_enter_sched_yield,syscalls:sys_enter_epoll_ctl
run() { # name port pid
  local u0 s0 u1 s1 out n tps
  read u0 s0 < <(awk '{print $14, $15}' /proc/$3/stat)
  local bench=(pgbench -h 127.0.0.1 -p $2 -U postgres -n -S -M $M -c $C -j 2 -T $T postgres)
  : > $W/perf.txt
  if [ -n "${NOPERF:-}" ]; then "${bench[@]}" > $W/pgbench.txt 2>&1
  else perf stat -x, -e $EVENTS -p $3 -o $W/perf.txt -- "${bench[@]}" > $W/pgbench.txt 2>&1; fi
  read u1 s1 < <(awk '{print $14, $15}' /proc/$3/stat)
  tps=$(grep -oP 'tps = \K[0-9.]+' $W/pgbench.txt | head -1)
  n=$(grep -oP 'processed: \K[0-9]+' $W/pgbench.txt | head -1)
  calls=$(awk -F, -v n=$n '/sys_enter/ { sub("syscalls:sys_enter_", "", $3); if ($1 > 0) printf "%s=%.2f ", $3, $1/n }' $W/perf.txt)
  printf "%-12s tps=%-9s user_us=%-6s sys_us=%-6s %s\n" $1 $tps \
    $(python3 -c "print(round(($u1-$u0)*1e6/$TICK/$n, 2))") \
    $(python3 -c "print(round(($s1-$s0)*1e6/$TICK/$n, 2))") "$calls"
}
for r in $(seq $R); do
  for t in "${TARGETS[@]}"; do IFS=: read name port pid <<< "$t"; run $name $port $pid; done
done
