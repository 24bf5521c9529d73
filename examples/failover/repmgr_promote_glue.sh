#!/bin/sh
# repmgrd's promote_command with the pooler in front (the PAUSE / promote /
# edit / RELOAD / RESUME glue pgbouncer users wrap around
# `repmgr standby promote`): clients stay connected and wait while the
# standby is promoted, the pooler's configuration stops naming the old
# primary, and writes resume on the new one only.
#
#   # repmgr.conf on each standby
#   promote_command='/path/to/repmgr_promote_glue.sh /etc/repmgr.conf'
#
# Steps:
#   1. ask the pooler's console which node it holds as the primary;
#   2. PAUSE (running transactions finish, new ones wait);
#   3. repmgr standby promote (on a failure: RESUME, exit non-zero);
#   4. remove that primary's [[nodes]] table from the pooler's configuration
#      file (written to a temporary file, then renamed);
#   5. RELOAD (the pooler drops the node, its connections drain, and writes
#      go to the node that answers as the primary: this one);
#   6. RESUME.
#
# Arguments: the repmgr.conf of this node.
# Environment:
#   POOLER_CONSOLE  libpq connection string of the pooler's admin console,
#                   e.g. "host=10.0.0.5 port=6432 user=ops dbname=pooler"
#   POOLER_CONFIG   the pooler's configuration file (writable by this user;
#                   on another host, put it on shared storage or edit it
#                   through your configuration management instead)
#   PGBIN           directory of psql and repmgr (default: from PATH)
set -eu
conf=$1
: "${POOLER_CONSOLE:?POOLER_CONSOLE must name the pooler's admin console}"
: "${POOLER_CONFIG:?POOLER_CONFIG must name the pooler's configuration file}"
bin="${PGBIN:+$PGBIN/}"

console() {
    "${bin}psql" -X -q -A -t -F '|' -v ON_ERROR_STOP=1 -d "$POOLER_CONSOLE" -c "$1"
}

old=$(console "SHOW NODES" | awk -F'|' '$5 == "primary" && $4 != "removed" { print $2 " " $3; exit }')
old_host=${old% *}
old_port=${old#* }
echo "glue: the pooler's primary is $old_host:$old_port; pausing"
console PAUSE

if ! "${bin}repmgr" -f "$conf" standby promote; then
    echo "glue: repmgr standby promote failed; resuming on the old configuration" >&2
    console RESUME || true
    exit 1
fi

# Drop the [[nodes]] table whose host and port are the old primary's.
tmp="$POOLER_CONFIG.glue.$$"
awk -v host="$old_host" -v port="$old_port" '
    function flush() {
        if (n > 0 && !(h == host && p == port)) { for (i = 1; i <= n; i++) print block[i] }
        n = 0; h = ""; p = ""; inblock = 0
    }
    /^[[:space:]]*\[/ { flush(); if ($0 ~ /^[[:space:]]*\[\[nodes\]\][[:space:]]*$/) inblock = 1 }
    inblock {
        block[++n] = $0
        if ($0 ~ /^[[:space:]]*host[[:space:]]*=/) { v = $0; sub(/^[^=]*=[[:space:]]*/, "", v); gsub(/["[:space:]]/, "", v); h = v }
        if ($0 ~ /^[[:space:]]*port[[:space:]]*=/) { v = $0; sub(/^[^=]*=[[:space:]]*/, "", v); gsub(/[[:space:]]/, "", v); p = v }
        next
    }
    { print }
    END { flush() }
' "$POOLER_CONFIG" > "$tmp"
mv "$tmp" "$POOLER_CONFIG"
echo "glue: $old_host:$old_port removed from $POOLER_CONFIG; reloading"
if ! console RELOAD; then
    echo "glue: RELOAD failed; the pooler keeps its configuration (it still finds the new primary by itself)" >&2
fi
console RESUME
echo "glue: resumed"
