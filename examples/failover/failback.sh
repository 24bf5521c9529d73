#!/bin/sh
# failover.failback_command: a node is back in service (attached by an
# operator, or returned by itself as a healthy standby with
# failover.auto_failback). Nothing needs doing for routing; this records the
# event where people look.
#
#   [failover]
#   failback_command = "/path/to/failback.sh %d %h %p"
#
# Environment:
#   FAILBACK_LOG   file to append to (default: only standard output, which the
#                  pooler logs)
set -eu
line="$(date -u +%Y-%m-%dT%H:%M:%SZ) node $1 ($2:$3) is back in service"
echo "$line"
if [ -n "${FAILBACK_LOG:-}" ]; then
    echo "$line" >>"$FAILBACK_LOG"
fi
