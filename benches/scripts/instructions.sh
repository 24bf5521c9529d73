#!/usr/bin/env bash
# User-space instructions the pooler spends per transaction, measured with
# valgrind's callgrind: steadier than CPU time on a noisy machine. Runs the
# pooler binary under callgrind twice against an existing PostgreSQL (one
# short and one long pgbench run) and prints the difference divided by the
# extra transactions, so start-up and connection opening cancel out.
#
#   benches/scripts/instructions.sh POOLER_BINARY PG_PORT [MODE] [CLIENTS] [PGBENCH_OPTS]
#   e.g. benches/scripts/instructions.sh target/release/pooler 5432 transaction 16 "-M extended"
#        benches/scripts/instructions.sh target/release/pooler 5432 transaction 8 "-C"
#
# POOLER_EXTRA_TOML is appended to the pooler's configuration (e.g. a
# [client_tls] section; pgbench then takes PGSSLMODE=require from the
# environment).
#
# Needs valgrind and pgbench; the database `postgres` initialised with
# `pgbench -i -s 1`, reachable as user postgres without a password.
set -euo pipefail
bin=$1; pg_port=$2; mode=${3:-transaction}; clients=${4:-16}; opts=${5:--M extended}
work=$(mktemp -d); trap 'rm -rf "$work"' EXIT
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$work/pooler.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
max_client_connections = 2000
[pool]
mode = "$mode"
size = 20
[auth]
method = "trust"
[[nodes]]
host = "127.0.0.1"
port = $pg_port
${POOLER_EXTRA_TOML:-}
TOML
run() { # transactions per client -> total instructions, transactions
  valgrind --tool=callgrind --callgrind-out-file="$work/cg.out" "$bin" --config "$work/pooler.toml" >/dev/null 2>"$work/vg.log" &
  local vp=$!
  for _ in $(seq 100); do pg_isready -h 127.0.0.1 -p "$port" -q 2>/dev/null && break; sleep 0.2; done
  local out; out=$(pgbench -h 127.0.0.1 -p "$port" -U postgres -n -S $opts -c "$clients" -j 2 -t "$1" postgres 2>/dev/null)
  kill -INT "$vp"; wait "$vp" 2>/dev/null || true
  local tx; tx=$(echo "$out" | awk '/number of transactions actually processed/ {print $NF}' | cut -d/ -f1)
  local ir; ir=$(awk '/^(summary|totals):/ {print $2; exit}' "$work/cg.out")
  echo "$ir $tx"
}
read -r ir1 tx1 < <(run 100)
read -r ir2 tx2 < <(run 600)
echo "$(basename "$bin") $mode clients=$clients [$opts]: $(( (ir2 - ir1) / (tx2 - tx1) )) instructions per transaction"
