#!/bin/sh
# Rebuilds a lost or diverged node of a repmgr cluster as a standby of the
# current primary: stop it if it runs, `repmgr standby clone --force` from
# the primary (its data directory is overwritten), start it with repmgr's
# service_start_command, `repmgr standby register --force`.
#
#   /path/to/repmgr_recover.sh %d %h %p %m %H %r
#
# Arguments: node index, host, port of the node to rebuild; node index,
# host, port of the current primary (pooler node indexes). The clone runs on
# the node's host and connects to the primary's host and port as given.
#
# Environment: as in repmgr_common.sh, and
#   REPMGR_USER  user the clone connects as (default: repmgr)
#   REPMGR_DB    repmgr's database (default: repmgr)
set -eu
id=$1 host=$2 port=$3 primary_id=$4 primary_host=$5 primary_port=$6
. "$(dirname "$0")/repmgr_common.sh"
conf=$(repmgr_conf "$id")

echo "recover: rebuilding node $id (repmgr node $(repmgr_id "$id"), $host:$port) from node $primary_id" \
    "(repmgr node $(repmgr_id "$primary_id"), $primary_host:$primary_port)"
# A node that still runs (a former primary come back) is stopped first;
# a dead one has nothing to stop.
if on_host "$host" "$repmgr" -f "$conf" node service --action=stop 2>/dev/null; then
    echo "recover: node $id stopped"
fi
on_host "$host" "$repmgr" -h "$primary_host" -p "$primary_port" -U "${REPMGR_USER:-repmgr}" \
    -d "${REPMGR_DB:-repmgr}" -f "$conf" standby clone --force --fast-checkpoint
on_host "$host" "$repmgr" -f "$conf" node service --action=start
on_host "$host" "$repmgr" -f "$conf" standby register --force
echo "recover: node $id rebuilt and registered as a standby of node $primary_id"
