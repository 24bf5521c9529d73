# Shared by the benchmark scripts (sourced): a pgbouncer to compare with.
#
#   start_pgbouncer DIR PORT PG_PORT   sets BOUNCER_PID
#
# Transaction pooling, pool 20, trust, as bench-matrix runs it; started as
# the postgres OS user (pgbouncer refuses root), its files in DIR.
start_pgbouncer() {
  local dir=$1 port=$2 pg=$3
  cat > "$dir/bouncer.ini" <<INI
[databases]
postgres = host=127.0.0.1 port=$pg
[pgbouncer]
listen_addr = 127.0.0.1
listen_port = $port
auth_type = trust
auth_file = $dir/users.txt
pool_mode = transaction
default_pool_size = 20
max_client_conn = 20000
unix_socket_dir =
logfile = $dir/bouncer.log
pidfile = $dir/bouncer.pid
INI
  echo '"postgres" ""' > "$dir/users.txt"
  chown postgres "$dir" "$dir/bouncer.ini" "$dir/users.txt"
  su postgres -c "pgbouncer -d $dir/bouncer.ini"
  sleep 1
  BOUNCER_PID=$(pgrep -f "pgbouncer -d $dir/bouncer.ini" | head -1)
}
