#!/bin/sh
# [recovery] command for plain PostgreSQL streaming replication (the
# pooler's RECOVER NODE, like pgpool's online recovery): rebuild a node as a
# standby of the current primary, then start it.
#
#   [recovery]
#   command = "/path/to/pg_recover.sh %d %h %p %D %m %H %r"
#
# Arguments: node id, host, port, data directory of the node to rebuild;
# node id, host, port of the current primary.
#
# A data directory that is still there (a failed or former primary) is
# rewound with pg_rewind first, which copies only what changed; when that is
# not possible (no data directory, a wiped or damaged one, no wal_log_hints)
# the directory is emptied and a new base backup taken with pg_basebackup.
# Either way it is written as a standby of the primary (standby.signal and
# primary_conninfo) and started on its port. The pooler then waits for it
# to stream before it attaches it again.
#
# Environment:
#   PGBIN         directory of psql, pg_ctl, pg_rewind, pg_basebackup (default: from PATH)
#   PG_OS_USER    OS user owning the data directory (runuser when root)
#   PGUSER        user for psql and pg_rewind (default: postgres)
#   REPL_USER     replication user (default: $PGUSER)
#   RECOVER_MODE  auto (default: rewind, else base backup) or basebackup
set -eu

id=$1 host=$2 port=$3 dir=$4
primary_id=$5 primary_host=$6 primary_port=$7

bin="${PGBIN:+$PGBIN/}"
user=${PGUSER:-postgres}
repl=${REPL_USER:-$user}

as_owner() {
    if [ -n "${PG_OS_USER:-}" ] && [ "$(id -u)" = 0 ]; then
        runuser -u "$PG_OS_USER" -- "$@"
    else
        "$@"
    fi
}

case "$host" in
localhost | 127.0.0.1 | ::1 | /*) ;;
*)
    echo "recover: node $id is on another host; run this script there (or through ssh)" >&2
    exit 1
    ;;
esac
if [ -z "$dir" ]; then
    echo "recover: node $id has no data_dir configured" >&2
    exit 1
fi

echo "recover: rebuilding node $id ($host:$port, $dir) from node $primary_id ($primary_host:$primary_port)"
if as_owner "${bin}pg_ctl" status -D "$dir" >/dev/null 2>&1; then
    as_owner "${bin}pg_ctl" stop -w -m fast -D "$dir"
fi
conninfo="host=$primary_host port=$primary_port user=$repl application_name=node$id"

rewound=no
if [ -f "$dir/PG_VERSION" ] && [ "${RECOVER_MODE:-auto}" != basebackup ]; then
    # A just-promoted primary names its new timeline only after a checkpoint.
    "${bin}psql" -X -q -h "$primary_host" -p "$primary_port" -U "$user" -d postgres -v ON_ERROR_STOP=1 -c CHECKPOINT
    if as_owner "${bin}pg_rewind" --target-pgdata="$dir" --write-recovery-conf \
        --source-server="$conninfo dbname=postgres"; then
        rewound=yes
        echo "recover: node $id rewound"
    else
        echo "recover: pg_rewind was not possible; taking a new base backup"
    fi
fi
if [ "$rewound" = no ]; then
    if [ -d "$dir" ]; then
        as_owner find "$dir" -mindepth 1 -delete
    else
        as_owner mkdir -p -m 700 "$dir"
    fi
    as_owner "${bin}pg_basebackup" -d "$conninfo" -D "$dir" -R -X stream -c fast
    echo "recover: node $id copied from node $primary_id"
fi
as_owner "${bin}pg_ctl" start -w -t 60 -D "$dir" -o "-p $port" -l "$dir/recover.log"
echo "recover: node $id started as a standby of node $primary_id"
