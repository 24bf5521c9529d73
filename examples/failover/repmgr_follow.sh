#!/bin/sh
# failover.follow_primary_command for clusters managed by repmgr: make a
# standby follow the new primary with `repmgr standby follow` on its host.
#
#   [failover]
#   follow_primary_command = "/path/to/repmgr_follow.sh %d %h %p %m %H %r"
#
# Arguments: standby node index, host, port; new primary node index, host,
# port (pooler node indexes). The pooler runs this once the new primary
# answers as one, so the follow target is named (--upstream-node-id) rather
# than searched for. On PostgreSQL 13+ repmgr re-points the standby with a
# reload; it waits up to standby_follow_timeout for it to stream. A standby
# whose timeline forked needs `repmgr node rejoin --force-rewind`, or a
# rebuild with repmgr_recover.sh.
#
# Environment: as in repmgr_common.sh.
set -eu
id=$1 host=$2 port=$3 new_id=$4 new_host=$5 new_port=$6
. "$(dirname "$0")/repmgr_common.sh"
conf=$(repmgr_conf "$id")

echo "follow: node $id (repmgr node $(repmgr_id "$id"), $host:$port) follows node $new_id" \
    "(repmgr node $(repmgr_id "$new_id"), $new_host:$new_port)"
on_host "$host" "$repmgr" -f "$conf" standby follow --upstream-node-id="$(repmgr_id "$new_id")"
echo "follow: node $id streams from node $new_id"
