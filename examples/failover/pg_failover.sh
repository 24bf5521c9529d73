#!/bin/sh
# failover.command for plain PostgreSQL streaming replication: promote the new
# main node with `pg_ctl promote`.
#
#   [failover]
#   command = "/path/to/pg_failover.sh %d %h %p %D %m %H %r %R"
#
# Arguments: failed node id, host, port, data directory; new main node id,
# host, port, data directory. The pooler runs this once per failed primary
# (and for a switchover, Pooler::promote_node), waits for it (up to
# failover.command_timeout), logs its output, and moves writes only once the
# new main node answers that it is out of recovery.
#
# Environment:
#   PGBIN       directory of pg_ctl and psql (default: from PATH)
#   PGUSER      superuser psql connects as to resume a paused replay
#               (default: postgres); PGPASSWORD / ~/.pgpass as libpq reads them
#   PG_OS_USER  OS user that owns the data directories. When set, pg_ctl runs
#               as that user: through runuser when the pooler runs as root on
#               the same host, through ssh PG_OS_USER@host for another host.
#   SSH_OPTS    extra ssh options (default: -o BatchMode=yes -o ConnectTimeout=10)
set -eu

failed_id=$1 failed_host=$2 failed_port=$3 failed_dir=$4
new_id=$5 new_host=$6 new_port=$7 new_dir=$8

pg_ctl="${PGBIN:+$PGBIN/}pg_ctl"
psql="${PGBIN:+$PGBIN/}psql"
ssh_opts=${SSH_OPTS:--o BatchMode=yes -o ConnectTimeout=10}

echo "failover: node $failed_id ($failed_host:$failed_port, $failed_dir) failed; promoting node $new_id ($new_host:$new_port)"

if [ -z "$new_dir" ]; then
    echo "failover: node $new_id has no data_dir configured; cannot promote it" >&2
    exit 1
fi

# Runs "$@" on the new main node's host, as PG_OS_USER when set.
on_new_main() {
    case "$new_host" in
    localhost | 127.0.0.1 | ::1 | /*)
        if [ -n "${PG_OS_USER:-}" ] && [ "$(id -u)" = 0 ]; then
            runuser -u "$PG_OS_USER" -- "$@"
        else
            "$@"
        fi
        ;;
    *)
        # shellcheck disable=SC2086
        ssh $ssh_opts "${PG_OS_USER:+$PG_OS_USER@}$new_host" "$@"
        ;;
    esac
}

# A standby whose replay is paused (pg_wal_replay_pause(), or a
# recovery_target_action = 'pause') still has WAL it received and has not
# applied: resume it so the promotion applies every received commit. If psql
# cannot connect, the promotion goes on: PostgreSQL 14+ ends a pause when it
# is promoted.
if "$psql" -X -q -A -t -h "$new_host" -p "$new_port" -U "${PGUSER:-postgres}" -d postgres \
    -c "SELECT pg_catalog.pg_wal_replay_resume() WHERE pg_catalog.pg_is_wal_replay_paused()" >/dev/null; then
    echo "failover: node $new_id replays everything it received"
else
    echo "failover: could not ask node $new_id to resume replay; promoting anyway" >&2
fi

on_new_main "$pg_ctl" promote -w -t 60 -D "$new_dir"
echo "failover: node $new_id promoted"
