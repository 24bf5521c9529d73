# Sourced by repmgr_failover.sh, repmgr_follow.sh and repmgr_recover.sh (not
# run on its own): where a node's repmgr.conf is, its repmgr node id, and how
# to run repmgr on a node's host as the repmgr OS user.
#
# Node ids: the pooler's placeholders (%d, %m) are node indexes in
# [[nodes]], 0-based; repmgr's node_id starts at 1. The repmgr node id of
# pooler node N is N + REPMGR_NODE_ID_OFFSET (default 1): list the nodes in
# the pooler's configuration in repmgr node_id order, or set the offset.
#
# Environment:
#   PGBIN                  directory of psql and repmgr (default: from PATH)
#   REPMGR_BIN             repmgr on the nodes' hosts (default: $PGBIN/repmgr,
#                          else repmgr from PATH)
#   REPMGR_CONF            repmgr.conf on every node's host
#                          (default: /etc/repmgr.conf)
#   REPMGR_CONF_DIR        instead of REPMGR_CONF: a directory holding
#                          node<repmgr node id>.conf for each node (several
#                          nodes on one host, as in the tests)
#   REPMGR_NODE_ID_OFFSET  repmgr node id minus pooler node index (default: 1)
#   PG_OS_USER             OS user repmgr runs as (default: postgres)
#   REPMGR_LOCAL           where repmgr runs: 1 on this host, 0 on the node's
#                          host through REPMGR_SSH; unset (auto): on this host
#                          when the node's host is localhost, 127.0.0.1, ::1 or
#                          a socket directory, else through REPMGR_SSH. On this
#                          host it runs as PG_OS_USER through runuser when this
#                          runs as root, else as the current user.
#   REPMGR_SSH             command reaching a host: given PG_OS_USER@host and
#                          one shell command line (default: ssh $SSH_OPTS)
#   SSH_OPTS               (default: -o BatchMode=yes -o ConnectTimeout=10)

repmgr_os_user=${PG_OS_USER:-postgres}
repmgr_offset=${REPMGR_NODE_ID_OFFSET:-1}
repmgr=${REPMGR_BIN:-${PGBIN:+$PGBIN/}repmgr}

# repmgr_id N: the repmgr node id of pooler node N.
repmgr_id() {
    echo $(($1 + repmgr_offset))
}

# repmgr_conf N: the repmgr.conf of pooler node N (on its host).
repmgr_conf() {
    if [ -n "${REPMGR_CONF_DIR:-}" ]; then
        echo "$REPMGR_CONF_DIR/node$(repmgr_id "$1").conf"
    else
        echo "${REPMGR_CONF:-/etc/repmgr.conf}"
    fi
}

# shell_quote ARG...: the arguments as one command line for a remote shell.
shell_quote() {
    _q=
    for _a in "$@"; do
        _q="$_q '$(printf '%s' "$_a" | sed "s/'/'\\\\''/g")'"
    done
    printf '%s' "${_q# }"
}

# on_host HOST COMMAND ARG...: runs the command on HOST as PG_OS_USER.
on_host() {
    _host=$1
    shift
    _mode=${REPMGR_LOCAL:-auto}
    if [ "$_mode" = auto ]; then
        case "$_host" in
        localhost | 127.0.0.1 | ::1 | /*) _mode=1 ;;
        *) _mode=0 ;;
        esac
    fi
    if [ "$_mode" = 1 ]; then
        if [ "$(id -u)" = 0 ]; then
            runuser -u "$repmgr_os_user" -- "$@"
        else
            "$@"
        fi
    else
        # shellcheck disable=SC2086
        ${REPMGR_SSH:-ssh ${SSH_OPTS:--o BatchMode=yes -o ConnectTimeout=10}} \
            "$repmgr_os_user@$_host" "$(shell_quote "$@")"
    fi
}
