#!/usr/bin/env bash
# Runs every test of Jade: unit tests, and black-box tests over real HTTP against real
# PostgreSQL, an S3 server (moto_server) and Azure's Blob emulator (Azurite).
#
# Sets up what the tests need: installs moto_server, Azurite, an OpenAPI validator, the
# pinned dbt Cloud clients with schemathesis and selenium (scripts/install-client-tools.sh)
# and real Airflow 2.11 and 3.3 (scripts/install-airflow.sh) under .tools/ (first run only),
# and runs both Airflows for the jobs tests while the tests run (tests/fixtures/airflow/live.sh) and Debian's chromium and chromium-driver (apt-get, when
# missing), checks that PostgreSQL answers on 127.0.0.1:5432 (and
# starts the local cluster if it is installed but down), and drops databases that earlier,
# interrupted runs left behind. Any missing service fails the run with a line naming it.
# Extra arguments go to `cargo test` (e.g. `scripts/test.sh --test api_v2`).
set -euo pipefail
cd "$(dirname "$0")/.."

PG_HOST=127.0.0.1
PG_PORT=5432
OPENAPI_VALIDATOR_VERSION="0.7.2"

fail() { echo "scripts/test.sh: $*" >&2; exit 1; }

# --- PostgreSQL -----------------------------------------------------------------------------
pg_up() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT" 2>/dev/null; }
if ! pg_up; then
    if command -v pg_ctlcluster >/dev/null && [ -d /etc/postgresql ]; then
        echo "starting the local PostgreSQL cluster" >&2
        pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
        for _ in $(seq 1 20); do pg_up && break; sleep 0.5; done
    fi
    pg_up || fail "PostgreSQL does not answer on $PG_HOST:$PG_PORT (trust auth for user postgres is expected; JADE_TEST_PG overrides the URL)"
fi
if command -v psql >/dev/null; then
    psql -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -Atc \
        "SELECT datname FROM pg_database WHERE datname LIKE 'jade_test_%'" |
        while read -r db; do
            psql -q -h "$PG_HOST" -p "$PG_PORT" -U postgres -d postgres -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)"
        done
fi

# --- Object-storage servers and the OpenAPI validator ---------------------------------------
scripts/install-storage-servers.sh >/dev/null
# shellcheck disable=SC1091
source .tools/env
[ -x "$JADE_MOTO_SERVER" ] || fail "moto_server is missing at $JADE_MOTO_SERVER"
[ -x "$JADE_AZURITE_BLOB" ] || fail "azurite-blob is missing at $JADE_AZURITE_BLOB"
if ! .tools/venv/bin/python -c "import openapi_spec_validator" 2>/dev/null; then
    .tools/venv/bin/python -m pip install --quiet --disable-pip-version-check \
        "openapi-spec-validator==$OPENAPI_VALIDATOR_VERSION" || fail "cannot install openapi-spec-validator from PyPI"
fi

# --- dbt Cloud clients and schemathesis (tests/clients.rs) -----------------------------------
scripts/install-client-tools.sh || fail "cannot install the pinned dbt Cloud clients into .tools/venv (scripts/install-client-tools.sh)"

# --- Real Airflow 2 and 3 (tests/airflow_versions.rs makes its databases with them) --------
scripts/install-airflow.sh || fail "cannot install the pinned Airflow 2 and 3 into .tools (scripts/install-airflow.sh)"

# --- Headless Chromium for the Swagger UI walk (tests/swagger_ui.rs) --------------------------
if [ ! -x /usr/bin/chromium ] || [ ! -x /usr/bin/chromedriver ]; then
    command -v apt-get >/dev/null || fail "Debian's chromium and chromium-driver are missing and apt-get is not available"
    echo "installing Debian's chromium and chromium-driver" >&2
    sudo_if_needed() { if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi; }
    { sudo_if_needed apt-get update -qq && DEBIAN_FRONTEND=noninteractive sudo_if_needed apt-get install -y -qq \
        --no-install-recommends chromium chromium-driver >/dev/null; } || fail "cannot install chromium and chromium-driver with apt-get"
fi

# --- Running Airflow 2 and 3 (tests/run_jobs.rs and tests/clients.rs run jobs on them) -------
# Built first, so the Airflows do not wait out the build; stopped, by process id, however the
# run ends.
cargo test --all-features --locked --no-run
export JADE_LIVE_AIRFLOW="$PWD/target/airflow-live"
trap 'tests/fixtures/airflow/live.sh stop "$JADE_LIVE_AIRFLOW"' EXIT
tests/fixtures/airflow/live.sh start "$JADE_LIVE_AIRFLOW" || fail "the Airflows the jobs tests run on did not start (see $JADE_LIVE_AIRFLOW)"

# --- Tests ----------------------------------------------------------------------------------
rm -f target/tmp/openapi.json
cargo test --all-features --locked "$@"

# The OpenAPI document the platform tests fetched from a running Jade.
if [ -f target/tmp/openapi.json ]; then
    .tools/venv/bin/openapi-spec-validator target/tmp/openapi.json
fi
