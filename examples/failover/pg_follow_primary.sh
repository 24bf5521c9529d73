#!/bin/sh
# failover.follow_primary_command for plain PostgreSQL streaming replication:
# re-point a standby at the new primary; if it cannot follow (its timeline
# forked before the promotion), rewind it with pg_rewind and restart it.
#
#   [failover]
#   follow_primary_command = "/path/to/pg_follow_primary.sh %d %h %p %D %m %H %r"
#
# Arguments: standby node id, host, port, data directory; new primary node
# id, host, port. The pooler runs this for every node other than the old and
# the new primary once the new primary is known.
#
# Step 1 (PostgreSQL 13+, over SQL, needs no shell on the standby's host):
#   ALTER SYSTEM SET primary_conninfo ...; SELECT pg_reload_conf();
# Step 2, only when the standby is not streaming from the new primary after
# FOLLOW_WAIT seconds and its data directory is on this host: stop it,
# pg_rewind it from the new primary, start it again as a standby.
#
# Environment:
#   PGBIN          directory of psql, pg_ctl, pg_rewind (default: from PATH)
#   PG_OS_USER     OS user owning the data directory (runuser when root)
#   PGUSER         user for psql and pg_rewind (default: postgres)
#   REPL_USER      replication user in primary_conninfo (default: $PGUSER)
#   FOLLOW_WAIT    seconds to wait for streaming before rewinding (default: 10)
set -eu

id=$1 host=$2 port=$3 dir=$4
new_id=$5 new_host=$6 new_port=$7

bin="${PGBIN:+$PGBIN/}"
user=${PGUSER:-postgres}
repl=${REPL_USER:-$user}
wait_s=${FOLLOW_WAIT:-10}

as_owner() {
    if [ -n "${PG_OS_USER:-}" ] && [ "$(id -u)" = 0 ]; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

sql() {
    "${bin}psql" -X -q -At -h "$host" -p "$port" -U "$user" -d postgres -v ON_ERROR_STOP=1 -c "$1"
}

conninfo="host=$new_host port=$new_port user=$repl application_name=node$id"
echo "follow: re-pointing node $id ($host:$port) at node $new_id ($new_host:$new_port)"
sql "ALTER SYSTEM SET primary_conninfo = '$conninfo'"
sql "SELECT pg_catalog.pg_reload_conf()" >/dev/null

i=0
while [ "$i" -lt "$wait_s" ]; do
    status=$(sql "SELECT status FROM pg_catalog.pg_stat_wal_receiver WHERE sender_port = $new_port" 2>/dev/null || true)
    if [ "$status" = streaming ]; then
        echo "follow: node $id streams from node $new_id"
        exit 0
    fi
    sleep 1
    i=$((i + 1))
done

case "$host" in
localhost | 127.0.0.1 | ::1 | /*) ;;
*)
    echo "follow: node $id is not streaming from node $new_id and is on another host; rewind it there" >&2
    exit 1
    ;;
esac
if [ -z "$dir" ]; then
    echo "follow: node $id is not streaming and has no data_dir configured" >&2
    exit 1
fi
echo "follow: node $id is not streaming from node $new_id: rewinding it"
as_owner "${bin}pg_ctl" stop -w -m fast -D "$dir"
as_owner "${bin}pg_rewind" --target-pgdata="$dir" \
    --source-server="host=$new_host port=$new_port user=$user dbname=postgres" --progress
as_owner touch "$dir/standby.signal"
as_owner "${bin}pg_ctl" start -w -D "$dir" -l "$dir/follow-restart.log"
echo "follow: node $id rewound and restarted as a standby of node $new_id"
