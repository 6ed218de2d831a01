#!/usr/bin/env bash
# Installs the object-storage test servers used by tests/storage_adapters.rs:
#   * moto_server (PyPI moto[server]) in a venv under .tools/venv  -> S3 API for the minio and s3 adapters
#   * azurite-blob (npm azurite) under .tools/node                   -> Azure Blob API for the blob adapter
# Idempotent: when the pinned versions are already there it only prints the paths.
# Writes .tools/env with the two exports; `source .tools/env` before `cargo test`.
set -euo pipefail

MOTO_VERSION="5.2.1"
AZURITE_VERSION="3.35.0" # 3.36+ needs Node >= 21; Debian 12 machines have Node 20.

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
TOOLS="${JADE_TOOLS_DIR:-$ROOT/.tools}"
VENV="$TOOLS/venv"
NODE_PREFIX="$TOOLS/node"
PYTHON="${PYTHON:-python3}"

mkdir -p "$TOOLS"

# --- moto ---------------------------------------------------------------------------------
moto_installed() {
    [ -x "$VENV/bin/moto_server" ] &&
        [ "$("$VENV/bin/python" -c 'import importlib.metadata as m; print(m.version("moto"))' 2>/dev/null)" = "$MOTO_VERSION" ]
}
if moto_installed; then
    echo "moto $MOTO_VERSION already installed in $VENV" >&2
else
    echo "installing moto[server]==$MOTO_VERSION into $VENV" >&2
    if [ ! -x "$VENV/bin/python" ]; then
        "$PYTHON" -m venv "$VENV"
    fi
    "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
    moto_installed || { echo "moto install failed" >&2; exit 1; }
fi

# --- azurite ------------------------------------------------------------------------------
azurite_installed() {
    [ -x "$NODE_PREFIX/node_modules/.bin/azurite-blob" ] &&
        [ "$(node -p "require('$NODE_PREFIX/node_modules/azurite/package.json').version" 2>/dev/null)" = "$AZURITE_VERSION" ]
}
if azurite_installed; then
    echo "azurite $AZURITE_VERSION already installed in $NODE_PREFIX" >&2
else
    echo "installing azurite@$AZURITE_VERSION into $NODE_PREFIX" >&2
    mkdir -p "$NODE_PREFIX"
    npm install --silent --no-audit --no-fund --prefix "$NODE_PREFIX" "azurite@$AZURITE_VERSION" >&2
    azurite_installed || { echo "azurite install failed" >&2; exit 1; }
fi

cat >"$TOOLS/env" <<ENV
export JADE_MOTO_SERVER=$VENV/bin/moto_server
export JADE_AZURITE_BLOB=$NODE_PREFIX/node_modules/.bin/azurite-blob
ENV
cat "$TOOLS/env"
