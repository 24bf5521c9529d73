#!/bin/sh
# failover.follow_primary_command for clusters managed by repmgr: make a
# standby follow the new primary with `repmgr standby follow` on its host.
#
#   [failover]
#   follow_primary_command = "/path/to/repmgr_follow.sh %d %h %m %H"
#
# repmgr finds the new primary itself; --wait lets it wait for the promotion
# to be visible. A standby whose timeline forked needs `repmgr node rejoin
# --force-rewind` instead (see docs/FAILOVER.md).
#
# Environment: REPMGR_CONF, PG_OS_USER, SSH_OPTS as in repmgr_failover.sh.
set -eu
id=$1 host=$2 new_id=$3 new_host=$4
conf=${REPMGR_CONF:-/etc/repmgr.conf}
os_user=${PG_OS_USER:-postgres}
ssh_opts=${SSH_OPTS:--o BatchMode=yes -o ConnectTimeout=10}

echo "follow: node $id ($host) follows node $new_id ($new_host)"
# shellcheck disable=SC2086
ssh $ssh_opts "$os_user@$host" repmgr -f "$conf" standby follow --wait --log-to-file
