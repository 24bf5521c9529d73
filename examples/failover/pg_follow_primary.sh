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
# Step 2, when the node does not answer (a former primary, stopped) or is
# not streaming from the new primary after FOLLOW_WAIT seconds, and its data
# directory is on this host: stop it, pg_rewind it from the new primary, start
# it again as a standby on its port. Run it by hand that way to bring a failed
# old primary back as a standby; with failover.auto_failback the pooler takes
# it back once it streams.
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
if sql "ALTER SYSTEM SET primary_conninfo = '$conninfo'" 2>/dev/null &&
    sql "SELECT pg_catalog.pg_reload_conf()" >/dev/null; then
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
    echo "follow: node $id is not streaming from node $new_id after ${wait_s}s"
else
    echo "follow: node $id does not answer (down, or a former primary)"
fi

case "$host" in
localhost | 127.0.0.1 | ::1 | /*) ;;
*)
    echo "follow: node $id is on another host; rewind it there (pg_rewind) or re-clone it" >&2
    exit 1
    ;;
esac
if [ -z "$dir" ]; then
    echo "follow: node $id has no data_dir configured; cannot rewind it" >&2
    exit 1
fi
echo "follow: rewinding node $id from node $new_id"
if as_owner "${bin}pg_ctl" status -D "$dir" >/dev/null 2>&1; then
    as_owner "${bin}pg_ctl" stop -w -m fast -D "$dir"
fi
# A just-promoted primary's control file still names the old timeline until
# its first checkpoint; pg_rewind reads it there and would see nothing to do.
"${bin}psql" -X -q -h "$new_host" -p "$new_port" -U "$user" -d postgres -v ON_ERROR_STOP=1 -c CHECKPOINT
# pg_rewind (PostgreSQL 13+) finishes crash recovery of an unclean target
# itself, and with --write-recovery-conf makes it a standby of the source.
# It needs wal_log_hints = on (or data checksums) and full_page_writes = on.
as_owner "${bin}pg_rewind" --target-pgdata="$dir" --write-recovery-conf \
    --source-server="host=$new_host port=$new_port user=$repl dbname=postgres application_name=node$id"
as_owner "${bin}pg_ctl" start -w -t 60 -D "$dir" -o "-p $port" -l "$dir/follow-restart.log"
echo "follow: node $id rewound and started as a standby of node $new_id"
