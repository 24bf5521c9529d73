#!/bin/sh
# failover.command for clusters managed by repmgr, when the pooler (not
# repmgrd) decides failover: promote the new main node with
# `repmgr standby promote` on its host.
#
#   [failover]
#   command = "/path/to/repmgr_failover.sh %d %h %m %H"
#
# With repmgrd doing automatic failover instead, leave failover.command empty:
# the pooler discovers the primary repmgrd promotes (passive discovery).
#
# Environment:
#   REPMGR_CONF  repmgr.conf on the nodes (default: /etc/repmgr.conf)
#   PG_OS_USER   OS user repmgr runs as (default: postgres)
#   SSH_OPTS     extra ssh options (default: -o BatchMode=yes -o ConnectTimeout=10)
set -eu
failed_id=$1 failed_host=$2 new_id=$3 new_host=$4
conf=${REPMGR_CONF:-/etc/repmgr.conf}
os_user=${PG_OS_USER:-postgres}
ssh_opts=${SSH_OPTS:--o BatchMode=yes -o ConnectTimeout=10}

echo "failover: node $failed_id ($failed_host) failed; repmgr promotes node $new_id ($new_host)"
# repmgr refuses to promote a standby whose replay is paused, and its received
# WAL must be applied anyway: resume replay first (a no-op when not paused).
# shellcheck disable=SC2086
ssh $ssh_opts "$os_user@$new_host" psql -X -q -A -t -d postgres \
    -c "'SELECT pg_catalog.pg_wal_replay_resume() WHERE pg_catalog.pg_is_wal_replay_paused()'" \
    || echo "failover: could not ask node $new_id to resume replay" >&2
# shellcheck disable=SC2086
ssh $ssh_opts "$os_user@$new_host" repmgr -f "$conf" standby promote --log-to-file
