#!/usr/bin/env bash
# Benchmark of manifests (issue 4): upload, trimmed download and full download of a large
# manifest (the fixture's nodes replicated up to $SIZE_MB MB), through a release build of
# `jade serve`, with the fs and the s3 storage adapter (S3 = moto_server on loopback).
# Reports throughput and how much the server's resident memory grew during each request
# (peak RSS reset before each request via /proc/<pid>/clear_refs). Writes
# bench/results/manifests.md.
#
#   bench/manifests.sh                 # 150 MB manifest
#   SIZE_MB=20 bench/manifests.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${SIZE_MB:-150}
PORT=${PORT:-4812}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
PREFIX=jade_mbench
TOKEN=benchtoken0000000000000000000000000000
OUT=${OUT:-bench/results/manifests.md}
WORK=$(mktemp -d)
trap 'kill ${JADE_PID:-} ${MOTO_PID:-} 2>/dev/null || true; rm -rf "$WORK"' EXIT

echo "building Jade (release)" >&2
cargo build --release --locked --bin jade >&2
scripts/install-storage-servers.sh >/dev/null
# shellcheck disable=SC1091
source .tools/env

echo "writing a ${SIZE_MB} MB manifest" >&2
python3 - tests/fixtures/manifest.json "$WORK/manifest.json" "$SIZE_MB" <<'PY'
import json, sys
fixture, out, size_mb = json.load(open(sys.argv[1])), sys.argv[2], int(sys.argv[3])
target = size_mb * 1_000_000
with open(out, "w") as f:
    f.write('{"metadata": ' + json.dumps(fixture["metadata"]) + ', "nodes": {')
    written, n, first = 0, 0, True
    nodes = list(fixture["nodes"].items())
    while written < target * 0.8:
        key, node = nodes[n % len(nodes)]
        entry = ("" if first else ", ") + json.dumps(f"{key}_{n}") + ": " + json.dumps(node)
        f.write(entry)
        written += len(entry)
        n, first = n + 1, False
    f.write("}")
    for member in ("sources", "macros", "docs", "parent_map", "child_map"):
        blob = json.dumps(fixture[member])
        f.write(f', "{member}": {blob}')
    macros = json.dumps(fixture["macros"])
    i = 0
    while f.tell() < target:
        f.write(f', "padding_{i}": {macros}')
        i += 1
    f.write("}")
PY
BYTES=$(stat -c %s "$WORK/manifest.json")

for db in datacoves jade; do
    psql -q -d postgres -c "DROP DATABASE IF EXISTS ${PREFIX}_$db WITH (FORCE)" -c "CREATE DATABASE ${PREFIX}_$db"
done
psql -q -v ON_ERROR_STOP=1 -d ${PREFIX}_datacoves -f tests/fixtures/sql/datacoves-schema.sql
psql -q -v ON_ERROR_STOP=1 -v token="$TOKEN" -d ${PREFIX}_datacoves -f bench/datacoves-seed.sql
psql -q -v ON_ERROR_STOP=1 -d ${PREFIX}_datacoves <<SQL
INSERT INTO projects_environment (id, project_id, name, slug, services) VALUES (1, 1, 'bench', 'bench', '{}');
SQL

kb() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }
# Runs a request ($@ after the label), printing "seconds peak_growth_kb"
measure() {
    local before
    echo 5 >"/proc/$JADE_PID/clear_refs"
    before=$(kb "$JADE_PID" VmRSS)
    local seconds
    seconds=$(curl -sf -o "$WORK/out" -w '%{time_total}' -H "Authorization: Token $TOKEN" "$@")
    echo "$seconds $(( $(kb "$JADE_PID" VmHWM) - before ))"
}

start_jade() {
    env -i PATH="$PATH" PORT=$PORT RUST_LOG=warn CONNECT_TO_AIRFLOW=false AUTH_VERIFIER=database \
        DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_jade" \
        DATACOVES_DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_datacoves" \
        TMPDIR="$WORK" "$@" target/release/jade serve 2>>"$WORK/jade.log" &
    JADE_PID=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/api/v2/healthcheck" >/dev/null && return; sleep 0.1; done
    echo "Jade did not start:" >&2; cat "$WORK/jade.log" >&2; exit 1
}

BASE="http://127.0.0.1:$PORT/api/v2/datacoves/manifests"
rows=""
for backend in fs s3; do
    if [ "$backend" = fs ]; then
        mkdir -p "$WORK/storage"
        start_jade STORAGE_ADAPTER=fs FS_STORAGE_ROOT="$WORK/storage"
    else
        MOTO_PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
        "$JADE_MOTO_SERVER" -H 127.0.0.1 -p "$MOTO_PORT" >"$WORK/moto.log" 2>&1 &
        MOTO_PID=$!
        for _ in $(seq 1 100); do curl -s "http://127.0.0.1:$MOTO_PORT/" >/dev/null && break; sleep 0.1; done
        curl -sf -X PUT "http://127.0.0.1:$MOTO_PORT/jade-bench" >/dev/null
        start_jade STORAGE_ADAPTER=s3 S3_BUCKET_NAME=jade-bench S3_ACCESS_KEY=bench S3_SECRET_ACCESS_KEY=bench \
            S3_REGION=us-east-1 S3_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
    fi
    echo "measuring $backend" >&2
    read -r up up_kb < <(measure -F environment_slug=bench -F "tag=big-$backend" -F "file=@$WORK/manifest.json" "$BASE")
    read -r trimmed trimmed_kb < <(measure "$BASE?environment_slug=bench&tag=big-$backend")
    trimmed_bytes=$(stat -c %s "$WORK/out")
    read -r full full_kb < <(measure "$BASE?environment_slug=bench&tag=big-$backend&trimmed=false")
    cmp -s "$WORK/out" "$WORK/manifest.json" || { echo "the full manifest did not round-trip" >&2; exit 1; }
    rows+=$(python3 - "$backend" "$BYTES" "$trimmed_bytes" "$up" "$up_kb" "$trimmed" "$trimmed_kb" "$full" "$full_kb" <<'PY'
import sys
backend, size, trimmed_size = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
up, up_kb, tr, tr_kb, full, full_kb = map(float, sys.argv[4:])
mb = lambda n: n / 1e6
row = lambda what, n, s, kb: f"| {backend} | {what} | {mb(n):.0f} MB | {s:.2f} s | {mb(n) / s:.0f} MB/s | {max(kb, 0) / 1024:.0f} MiB ({max(kb, 0) * 1024 / size:.2f}x the manifest) |"
print(row("upload (validate, trim, store both)", size, up, up_kb))
print(row("trimmed download", trimmed_size, tr, tr_kb))
print(row("full download", size, full, full_kb))
PY
)$'\n'
    kill "$JADE_PID"; wait "$JADE_PID" 2>/dev/null || true
    [ -n "${MOTO_PID:-}" ] && { kill "$MOTO_PID"; wait "$MOTO_PID" 2>/dev/null || true; MOTO_PID=; }
done

cat >"$OUT" <<MD
# Manifest benchmark

\`bench/manifests.sh\` (SIZE_MB=$SIZE_MB), $(date -u +%Y-%m-%d), on $(nproc) cores, Jade $(git rev-parse --short HEAD)
release build, \`jade serve\` with PostgreSQL on loopback; S3 is moto_server on loopback. The
manifest is the fixture with its nodes replicated: $BYTES bytes. Each request is one \`curl\`;
"peak RSS growth" is the server's VmHWM after the request minus its VmRSS before it (the peak
is reset before each request). Target: at most about twice the body's size plus a constant.

| storage | request | body | time | throughput | peak RSS growth |
|---|---|---|---|---|---|
${rows}
MD
cat "$OUT"
for db in datacoves jade; do psql -q -d postgres -c "DROP DATABASE IF EXISTS ${PREFIX}_$db WITH (FORCE)"; done
