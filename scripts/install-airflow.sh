#!/usr/bin/env bash
# Installs the real Airflows that Jade's tests make Airflow databases with
# (tests/support/airflow.rs, tests/fixtures/airflow/), each in a venv of the tools directory,
# every package pinned by tests/fixtures/airflow/requirements-airflow{2,3}.txt:
#   .tools/airflow2   apache-airflow 2.11.0 (the last Airflow 2) with psycopg2
#   .tools/airflow3   apache-airflow 3.3.2 with its standard provider (DAGs of airflow.sdk),
#                     psycopg2 and asyncpg (which its `db migrate` needs)
# Idempotent: a venv already made from the same requirements is left alone. Fails loudly
# when pip cannot install them or Airflow does not start.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${JADE_TOOLS_DIR:-$ROOT/.tools}"
PYTHON="${PYTHON:-python3}"

install() { # install NAME: .tools/NAME from requirements-NAME.txt
    local venv="$TOOLS/$1" requirements="$ROOT/tests/fixtures/airflow/requirements-$1.txt"
    if [ -x "$venv/bin/airflow" ] && cmp -s "$requirements" "$venv/jade-requirements.txt"; then
        echo "$1 already installed in $venv" >&2
        return
    fi
    echo "installing $1 into $venv" >&2
    rm -rf "$venv"
    "$PYTHON" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check -r "$requirements" >&2 || {
        echo "install-airflow.sh: pip could not install $requirements" >&2
        exit 1
    }
    local home
    home="$(mktemp -d)"
    AIRFLOW_HOME="$home" "$venv/bin/airflow" version >/dev/null 2>&1 || {
        echo "install-airflow.sh: $venv/bin/airflow is installed but does not start" >&2
        exit 1
    }
    rm -rf "$home"
    cp "$requirements" "$venv/jade-requirements.txt"
}

mkdir -p "$TOOLS"
install airflow2
install airflow3
