#!/bin/sh
# failover.command for clusters managed by repmgr, when the pooler (not
# repmgrd) decides failover: promote the new main node with
# `repmgr standby promote` on its host.
#
#   [failover]
#   command = "/path/to/repmgr_failover.sh %d %h %p %m %H %r"
#
# Arguments: failed node index, host, port; new main node index, host, port
# (pooler node indexes; see REPMGR_NODE_ID_OFFSET in repmgr_common.sh for
# repmgr's node ids). Run repmgrd with failover=manual (or not at all), so
# that only one of them promotes.
#
# With repmgrd doing automatic failover instead, leave failover.command empty:
# the pooler discovers the primary repmgrd promotes (passive discovery).
#
# Environment: as in repmgr_common.sh (REPMGR_CONF or REPMGR_CONF_DIR,
# REPMGR_NODE_ID_OFFSET, PG_OS_USER, REPMGR_LOCAL, REPMGR_SSH, PGBIN), and
#   PGUSER   superuser psql connects as, from this host, to resume a paused
#            replay (default: postgres); PGPASSWORD / ~/.pgpass as libpq reads them
set -eu
failed_id=$1 failed_host=$2 failed_port=$3 new_id=$4 new_host=$5 new_port=$6
. "$(dirname "$0")/repmgr_common.sh"
conf=$(repmgr_conf "$new_id")
psql="${PGBIN:+$PGBIN/}psql"

echo "failover: node $failed_id ($failed_host:$failed_port) failed; repmgr promotes node $new_id" \
    "(repmgr node $(repmgr_id "$new_id"), $new_host:$new_port)"
# A standby whose replay is paused still has WAL it received and has not
# applied: resume it so the promotion applies every received commit (a no-op
# when not paused). Over SQL from here: no shell on the node needed.
if "$psql" -X -q -A -t -h "$new_host" -p "$new_port" -U "${PGUSER:-postgres}" -d postgres \
    -c "SELECT pg_catalog.pg_wal_replay_resume() WHERE pg_catalog.pg_is_wal_replay_paused()" >/dev/null; then
    echo "failover: node $new_id replays everything it received"
else
    echo "failover: could not ask node $new_id to resume replay; promoting anyway" >&2
fi
# repmgr refuses if another primary is reachable, promotes (pg_promote() or
# service_promote_command), waits for it, and records it in its metadata.
on_host "$new_host" "$repmgr" -f "$conf" standby promote
echo "failover: node $new_id promoted"
