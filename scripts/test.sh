#!/usr/bin/env bash
# Runs the test suite (unit, property and end-to-end against real PostgreSQL)
# after installing what it needs, when missing:
#   - the PostgreSQL server and client binaries (Debian/Ubuntu packages), and
#     procps for /bin/kill;
#   - the `postgres` OS user when run as root (PostgreSQL refuses to run as
#     root; the tests start it as that user, or as $POOLER_TEST_PG_USER);
#   - psycopg 3, the Python driver one end-to-end test drives, in a virtualenv
#     at .venv/ (git-ignored), handed to the tests as $POOLER_TEST_PYTHON.
# System packages are installed with apt-get, as root or through sudo.
# Arguments go to cargo test: scripts/test.sh -p pooler-core --test auth
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
# A virtualenv needs python3 with ensurepip (Debian ships it as python3-venv).
if ! command -v python3 >/dev/null 2>&1; then
  need+=(python3 python3-venv)
elif [ ! -x .venv/bin/python ] && ! python3 -c "import ensurepip, venv" >/dev/null 2>&1; then
  need+=(python3-venv)
fi
if [ ${#need[@]} -gt 0 ]; then
  echo "scripts/test.sh: installing ${need[*]}" >&2
  as_root apt-get update
  as_root apt-get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confdef -o Dpkg::Options::=--force-confold "${need[@]}"
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

exec cargo test --workspace --locked "$@"
