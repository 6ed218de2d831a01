#!/usr/bin/env bash
# Installs the off-the-shelf dbt Cloud clients that tests/clients.rs drives against Jade,
# pinned, into the tools venv (.tools/venv, created by scripts/install-storage-servers.sh):
#   * apache-airflow-providers-dbt-cloud (Airflow's DbtCloudHook; pulls apache-airflow)
#   * dbt-cloud-cli                      (the `dbt-cloud` command)
#   * dbtc                               (dbtCloudClient)
#   * schemathesis                       (fuzzes the served OpenAPI document)
#   * selenium                           (drives Debian's chromium through Swagger UI: tests/swagger_ui.rs)
# Idempotent: packages already at the pinned version are left alone. Only adds packages;
# fails loudly when pip cannot install them or the installed versions are not the pins.
set -euo pipefail

AIRFLOW_VERSION="3.3.2"
AIRFLOW_DBT_CLOUD_VERSION="4.11.1"
DBT_CLOUD_CLI_VERSION="0.9.1"
DBTC_VERSION="0.11.7"
SCHEMATHESIS_VERSION="4.32.5"
SELENIUM_VERSION="4.51.0"
# dbtc pins pandas<2.2, whose wheels need NumPy 1.x; pyarrow 22+ refuses to import with it.
PYARROW_VERSION="21.0.0"

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${JADE_TOOLS_DIR:-$ROOT/.tools}"
VENV="$TOOLS/venv"

[ -x "$VENV/bin/python" ] || {
    echo "install-client-tools.sh: $VENV/bin/python is missing; run scripts/install-storage-servers.sh first" >&2
    exit 1
}

PINS=(
    "apache-airflow==$AIRFLOW_VERSION"
    "apache-airflow-providers-dbt-cloud==$AIRFLOW_DBT_CLOUD_VERSION"
    "dbt-cloud-cli==$DBT_CLOUD_CLI_VERSION"
    "dbtc==$DBTC_VERSION"
    "schemathesis==$SCHEMATHESIS_VERSION"
    "selenium==$SELENIUM_VERSION"
    "pyarrow==$PYARROW_VERSION"
)

# Prints the pins that are not installed at their version.
missing() {
    "$VENV/bin/python" - "${PINS[@]}" <<'PY'
import importlib.metadata as m
import sys

for pin in sys.argv[1:]:
    name, version = pin.split("==")
    try:
        if m.version(name) == version:
            continue
    except m.PackageNotFoundError:
        pass
    print(pin)
PY
}

todo="$(missing)"
if [ -z "$todo" ]; then
    echo "dbt Cloud clients already installed in $VENV" >&2
    exit 0
fi
echo "installing into $VENV: $(echo "$todo" | tr '\n' ' ')" >&2
# The whole pin set goes to pip at once so the resolver keeps them mutually consistent.
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${PINS[@]}" >&2 || {
    echo "install-client-tools.sh: pip could not install ${PINS[*]}" >&2
    exit 1
}
todo="$(missing)"
if [ -n "$todo" ]; then
    echo "install-client-tools.sh: still not at the pinned version after pip install: $todo" >&2
    exit 1
fi
"$VENV/bin/python" -c "import airflow.providers.dbt.cloud.hooks.dbt, dbt_cloud.cli, dbtc, schemathesis.cli, selenium.webdriver" || {
    echo "install-client-tools.sh: the clients are installed but do not import (see above)" >&2
    exit 1
}
echo "dbt Cloud clients installed in $VENV" >&2
