#!/usr/bin/env bash
# Runs the test suite (unit, property and end-to-end against real PostgreSQL)
# after installing what it needs, when missing:
#   - the PostgreSQL server and client binaries (Debian/Ubuntu packages), and
#     procps for /bin/kill;
#   - the `postgres` OS user when run as root (PostgreSQL refuses to run as
#     root; the tests start it as that user, or as $POOLER_TEST_PG_USER);
#   - repmgr (postgresql-<major>-repmgr, the major version the tests use);
#   - etcd (etcd-server) for the tests of several poolers coordinating, and
#     protoc (protobuf-compiler), which the etcd client needs to build;
#   - psycopg 3, the Python driver one end-to-end test drives, in a virtualenv
#     at .venv/ (git-ignored), handed to the tests as $POOLER_TEST_PYTHON.
# System packages are installed with apt-get, as root or through sudo.
# Arguments go to cargo test: scripts/test.sh -p pooler-core --test auth
# (it runs cargo test --workspace --locked --features pooler-bin/etcd).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive

as_root() {
  if [ "$(id -u)" = 0 ]; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    echo "scripts/test.sh: needs root (or sudo) to run: $*" >&2
    exit 1
  fi
}

# System packages. The tests start their own throwaway clusters; Debian's
# default cluster is not wanted, so don't let the package create one.
# The tests also drive psql and pgbench, and send signals with /bin/kill.
have_postgres() {
  if [ -n "${POOLER_PG_BIN:-}" ] && [ -x "$POOLER_PG_BIN/initdb" ] && [ -x "$POOLER_PG_BIN/pgbench" ]; then
    return 0
  fi
  ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 && ls /usr/lib/postgresql/*/bin/pgbench >/dev/null 2>&1
}
need=()
if ! have_postgres; then
  need+=(postgresql postgresql-client)
  if [ ! -e /etc/postgresql-common/createcluster.conf ]; then
    as_root mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
fi
[ -x /bin/kill ] || [ -x /usr/bin/kill ] || need+=(procps)
command -v etcd >/dev/null 2>&1 || need+=(etcd-server)
command -v protoc >/dev/null 2>&1 || need+=(protobuf-compiler)
# A virtualenv needs python3 with ensurepip (Debian ships it as python3-venv).
if ! command -v python3 >/dev/null 2>&1; then
  need+=(python3 python3-venv)
elif [ ! -x .venv/bin/python ] && ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  need+=(python3-venv)
fi
apt_updated=
apt_install() {
  echo "scripts/test.sh: installing $*" >&2
  if [ -z "$apt_updated" ]; then
    as_root apt-get update
    apt_updated=1
  fi
  as_root apt-get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "$@"
}
if [ ${#need[@]} -gt 0 ]; then
  apt_install "${need[@]}"
fi

# repmgr and repmgrd for tests/repmgr.rs, from the package matching the
# PostgreSQL major version the tests use ($POOLER_PG_BIN, else the newest
# /usr/lib/postgresql/<major>/bin, as pooler-testkit picks it), where the
# testkit looks for them. When no such package exists in the apt sources,
# the repmgr tests are skipped, saying why ($POOLER_TEST_SKIP_REPMGR);
# otherwise a missing repmgr fails them.
if [ -n "${POOLER_PG_BIN:-}" ] && [ -x "$POOLER_PG_BIN/initdb" ]; then
  pg_bin=$POOLER_PG_BIN
else
  pg_bin=$(ls /usr/lib/postgresql/*/bin/initdb 2>/dev/null | sort -t/ -k5,5n | tail -n 1)
  pg_bin=${pg_bin%/initdb}
fi
pg_major=$("$pg_bin/postgres" --version | sed -n 's/.*(PostgreSQL) \([0-9][0-9]*\).*/\1/p')
if [ ! -x "$pg_bin/repmgr" ] || [ ! -x "$pg_bin/repmgrd" ]; then
  repmgr_pkg="postgresql-$pg_major-repmgr"
  if ! command -v apt-get >/dev/null 2>&1; then
    POOLER_TEST_SKIP_REPMGR="no apt-get here to install $repmgr_pkg; install repmgr for PostgreSQL $pg_major into $pg_bin"
  else
    if [ -z "$apt_updated" ]; then
      as_root apt-get update
      apt_updated=1
    fi
    if apt-cache show "$repmgr_pkg" >/dev/null 2>&1; then
      apt_install "$repmgr_pkg"
    else
      POOLER_TEST_SKIP_REPMGR="no $repmgr_pkg package in the apt sources"
    fi
  fi
  if [ -n "${POOLER_TEST_SKIP_REPMGR:-}" ]; then
    echo "scripts/test.sh: the repmgr tests will be skipped: $POOLER_TEST_SKIP_REPMGR" >&2
    export POOLER_TEST_SKIP_REPMGR
  fi
fi

# Servers refuse to run as root: the test harness runs them as this user.
if [ "$(id -u)" = 0 ] && [ -z "${POOLER_TEST_PG_USER:-}" ] && ! id postgres >/dev/null 2>&1; then
  useradd --system --home-dir /var/lib/postgresql --shell /bin/bash postgres
fi

# psycopg 3 (a driver that prepares statements server-side) for the
# transaction-pooling end-to-end test, in a virtualenv of this checkout.
if ! .venv/bin/python -c "import psycopg" >/dev/null 2>&1; then
  if [ ! -x .venv/bin/python ]; then
    rm -rf .venv
    python3 -m venv .venv
  fi
  .venv/bin/python -m pip install --quiet --disable-pip-version-check 'psycopg[binary]>=3.1'
fi
POOLER_TEST_PYTHON="$(pwd)/.venv/bin/python"
export POOLER_TEST_PYTHON

# The binary's etcd feature: the HA tests run three of them (docs/HA.md).
exec cargo test --workspace --locked --features pooler-bin/etcd "$@"
