#!/usr/bin/env bash
# Benchmark of running a job (issue 17): the time Jade adds to `POST …/jobs/{id}/run/` over
# calling the environment's Airflow REST API directly, on a running Airflow 3.3 (api-server,
# JWT) and 2.11 (webserver, basic auth) of tests/fixtures/airflow/live.sh. Each round asks
# Airflow directly (curl, the same request Jade makes) and then Jade (release build, token
# verified by AUTH_VERIFIER=database, cached), interleaved, $ROUNDS rounds per version, for
# the DAG `paused` (its runs stay queued: the scheduler adds no load to the measurement).
# Everything runs on this machine. Writes bench/results/trigger.md.
#
#   bench/trigger.sh                 # 50 rounds
#   ROUNDS=10 bench/trigger.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${ROUNDS:-50}
PORT=${PORT:-4812}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
PREFIX=jade_bench_trigger
TOKEN=benchtoken0000000000000000000000000000
OUT=${OUT:-bench/results/trigger.md}
WORK=$(mktemp -d)
LIVE="$WORK/airflow"
trap 'kill "${JADE_PID:-0}" 2>/dev/null || true; tests/fixtures/airflow/live.sh stop "$LIVE" || true; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT

command -v psql >/dev/null || { echo "bench/trigger.sh: psql is required" >&2; exit 1; }
echo "building Jade (release)" >&2
cargo build --release --locked --bin jade >&2
scripts/install-airflow.sh >&2
JADE_LIVE_DATABASES=${PREFIX}_live tests/fixtures/airflow/live.sh start "$LIVE" >&2

field() { sed -n "s/^$2=//p" "$LIVE/airflow$1.env"; }
FERNET_KEY=$(.tools/airflow3/bin/python -c 'from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())')
encrypt() { .tools/airflow3/bin/python -c 'import sys; from cryptography.fernet import Fernet; print(Fernet(sys.argv[1].encode()).encrypt(sys.argv[2].encode()).decode())' "$FERNET_KEY" "$1"; }
config() { # the airflow_config of an environment on Airflow $1
    printf '{"db": {"external": true, "host": "%s", "port": %s, "user": "%s", "password": "unused", "database": "%s"}, "api": {"url": "%s", "username": "%s", "password": "%s"}}' \
        "$PGHOST" "$PGPORT" "$PGUSER" "$(field "$1" database)" "$(field "$1" url)" "$(field "$1" username)" "$(field "$1" password)"
}

echo "seeding" >&2
for db in datacoves jade; do
    psql -q -d postgres -c "DROP DATABASE IF EXISTS ${PREFIX}_$db WITH (FORCE)" -c "CREATE DATABASE ${PREFIX}_$db"
done
psql -q -v ON_ERROR_STOP=1 -d ${PREFIX}_datacoves -f tests/fixtures/sql/datacoves-schema.sql
psql -q -v ON_ERROR_STOP=1 -v token="$TOKEN" -d ${PREFIX}_datacoves -f bench/datacoves-seed.sql
for version in 2 3; do
    psql -q -v ON_ERROR_STOP=1 -d ${PREFIX}_datacoves \
        -v id="$version" -v slug="airflow$version" -v config="$(encrypt "$(config "$version")")" <<'SQL'
INSERT INTO projects_environment (id, project_id, name, slug, services, airflow_config, created_at, updated_at)
  VALUES (:id, 1, :'slug', :'slug', '{"airflow": {"enabled": true}}', convert_to(:'config', 'UTF8'), now(), now());
SQL
done

echo "starting Jade on :$PORT" >&2
env -i PATH="$PATH" PORT=$PORT RUST_LOG=warn METRICS_ADDR= \
    DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_jade" \
    DATACOVES_DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_datacoves" \
    FERNET_KEY="$FERNET_KEY" AUTH_VERIFIER=database STORAGE_ADAPTER=fs FS_STORAGE_ROOT="$WORK" \
    API_COMPAT=dbt-cloud target/release/jade serve 2>"$WORK/jade.log" &
JADE_PID=$!
JADE="http://127.0.0.1:$PORT"
for _ in $(seq 1 100); do curl -sf "$JADE/api/v2/healthcheck" >/dev/null && break; sleep 0.1; done

# curl's total time of one POST, in ms; fails on any status but 200.
post_ms() { # url body header...
    local url=$1 body=$2 status time
    shift 2
    read -r status time < <(curl -s -o "$WORK/answer" -w '%{http_code} %{time_total}\n' -X POST "$url" \
        -H 'Content-Type: application/json' "$@" -d "$body")
    [ "$status" = 200 ] || { echo "POST $url answered $status: $(cat "$WORK/answer")" >&2; exit 1; }
    python3 -c "print(f'{$time * 1000:.2f}')"
}

results=()
for version in 3 2; do
    url="$(field "$version" url)"
    username="$(field "$version" username)"
    password="$(field "$version" password)"
    job=$(curl -sf -H "Authorization: Token $TOKEN" "$JADE/api/v2/accounts/1/jobs?environment_id=$version" |
        python3 -c 'import json, sys; print(next(j["id"] for j in json.load(sys.stdin)["data"] if j["dag_id"] == "paused"))')
    if [ "$version" = 3 ]; then
        token=$(curl -sf -X POST "$url/auth/token" -H 'Content-Type: application/json' \
            -d "{\"username\": \"$username\", \"password\": \"$password\"}" | python3 -c 'import json, sys; print(json.load(sys.stdin)["access_token"])')
        direct=("$url/api/v2/dags/paused/dagRuns" '{"logical_date": null, "conf": {"cause": "bench"}, "note": "bench"}' -H "Authorization: Bearer $token")
    else
        direct=("$url/api/v1/dags/paused/dagRuns" '{"conf": {"cause": "bench"}, "note": "bench"}' -u "$username:$password")
    fi
    jade=("$JADE/api/v2/accounts/1/jobs/$job/run/" '{"cause": "bench"}' -H "Authorization: Token $TOKEN")
    # Warm up both: the token cache, Jade's pools, Airflow's workers.
    for _ in 1 2 3; do post_ms "${direct[@]}" >/dev/null; post_ms "${jade[@]}" >/dev/null; done
    echo "measuring Airflow $version: $ROUNDS rounds" >&2
    : >"$WORK/times.$version"
    for _ in $(seq 1 "$ROUNDS"); do
        echo "$(post_ms "${direct[@]}") $(post_ms "${jade[@]}")" >>"$WORK/times.$version"
    done
    results+=("$(python3 - "$WORK/times.$version" "$version" <<'PY'
import statistics, sys
pairs = [tuple(map(float, line.split())) for line in open(sys.argv[1])]
direct = statistics.median(p[0] for p in pairs)
jade = statistics.median(p[1] for p in pairs)
added = statistics.median(p[1] - p[0] for p in pairs)
verdict = "met" if added <= 20 else "NOT met"
print(f"| Airflow {sys.argv[2]} | {len(pairs)} | {direct:.2f} ms | {jade:.2f} ms | {added:.2f} ms ({verdict}) |")
PY
)")
done

cat >"$OUT" <<MD
# Running a job: what Jade adds

\`bench/trigger.sh\` (ROUNDS=$ROUNDS), $(date -u +%Y-%m-%d), on $(nproc) cores, PostgreSQL
$(psql -d postgres -Atc 'SHOW server_version'), Jade $(git rev-parse --short HEAD) release build,
Airflow 3.3.2 (api-server, one worker) and 2.11.0 (webserver, one worker) of
\`tests/fixtures/airflow/live.sh\`, everything on this machine over loopback.

Each round POSTs a new run of the DAG \`paused\` to Airflow's REST API directly (curl, the
request Jade makes: Airflow 3 with a bearer token fetched beforehand, Airflow 2 with basic
auth), then \`POST /api/v2/accounts/1/jobs/{id}/run/\` to Jade, which checks the token's
permission, reads the DAG, asks Airflow for the run (its cached token or basic auth), finds
the new DAG run in Airflow's database, registers its id and answers the run. Medians of the
rounds; "added" is the median of each round's difference (target ≤ 20 ms).

| Airflow | rounds | Airflow's API directly | through Jade | Jade adds |
|---|---|---|---|---|
$(printf '%s\n' "${results[@]}")

Airflow 2's basic auth checks the password's hash on every request, so both of its columns
carry that cost; Airflow 3 checks a JWT.
MD
cat "$OUT"
[ -n "${KEEP_DB:-}" ] || for db in datacoves jade; do psql -q -d postgres -c "DROP DATABASE IF EXISTS ${PREFIX}_$db WITH (FORCE)"; done
