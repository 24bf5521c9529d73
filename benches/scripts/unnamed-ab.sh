#!/bin/bash
# Side by side in one sitting, alternating rounds: PostgreSQL directly, the
# pooler with `pool.unnamed_statement_cache` on, the same binary with it
# off, and pgbouncer (transaction pooling, pool 20); pgbench select-only.
# Prints tps and the pooler's (or pgbouncer's) CPU per transaction
# (utime + stime from /proc, kernel time included).
#
#   benches/scripts/unnamed-ab.sh BIN PG_PORT [CLIENTS] [SECONDS] [ROUNDS] [PROTOCOL]
#   e.g. benches/scripts/unnamed-ab.sh target/release/pooler 55432 16 8 3 extended
#
# Needs pgbench and pgbouncer; the database `postgres` initialised with
# `pgbench -i`, reachable as user postgres without a password; run as root
# (pgbouncer is started as the postgres OS user). Ports 6501-6503.
set -u
BIN=$1; PG=$2; C=${3:-16}; T=${4:-8}; R=${5:-3}; M=${6:-extended}
export PATH=/usr/lib/postgresql/15/bin:$PATH
W=$(mktemp -d); chmod 755 "$W"; chown postgres "$W"
trap 'kill ${P1:-} ${P2:-} ${P3:-} 2>/dev/null; rm -rf "$W"' EXIT
mk() { # port cache
cat > $W/p$1.toml <<TOML
[server]
listen = "127.0.0.1:$1"
max_client_connections = 2000
[pool]
mode = "transaction"
size = 20
unnamed_statement_cache = $2
[auth]
method = "trust"
[[nodes]]
host = "127.0.0.1"
port = $PG
TOML
}
mk 6501 true; mk 6502 false
$BIN --config $W/p6501.toml >/dev/null 2>$W/p6501.log & P1=$!
$BIN --config $W/p6502.toml >/dev/null 2>$W/p6502.log & P2=$!
. "$(dirname "$0")/common.sh"
start_pgbouncer "$W" 6503 "$PG"; P3=$BOUNCER_PID
cpu() { awk '{print $14+$15}' /proc/$1/stat; }
run() { # name port pid
  local before after out tps
  [ -n "${3:-}" ] && before=$(cpu $3)
  out=$(pgbench -h 127.0.0.1 -p $2 -U postgres -n -S -M $M -c $C -j 2 -T $T postgres 2>&1)
  tps=$(echo "$out" | grep -oP 'tps = \K[0-9.]+' | head -1)
  n=$(echo "$out" | grep -oP 'processed: \K[0-9]+' | head -1)
  if [ -n "${3:-}" ]; then after=$(cpu $3); us=$(python3 -c "print(round(($after-$before)*10000/$n, 2))"); else us=-; fi
  echo "$1 tps=$tps cpu_us_per_txn=$us"
}
for r in $(seq $R); do
  run direct $PG ""
  run cache-on 6501 $P1
  run cache-off 6502 $P2
  run pgbouncer 6503 $P3
done

