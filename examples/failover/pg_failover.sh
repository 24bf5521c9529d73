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
#   PGBIN       directory of pg_ctl (default: from PATH)
#   PG_OS_USER  OS user that owns the data directories. When set, pg_ctl runs
#               as that user: through runuser when the pooler runs as root on
#               the same host, through ssh PG_OS_USER@host for another host.
#   SSH_OPTS    extra ssh options (default: -o BatchMode=yes -o ConnectTimeout=10)
set -eu

failed_id=$1 failed_host=$2 failed_port=$3 failed_dir=$4
new_id=$5 new_host=$6 new_port=$7 new_dir=$8

pg_ctl="${PGBIN:+$PGBIN/}pg_ctl"
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

on_new_main "$pg_ctl" promote -w -t 60 -D "$new_dir"
echo "failover: node $new_id promoted"
