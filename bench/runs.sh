#!/usr/bin/env bash
# Benchmark of the run list (issues 3, 7 and 16): the newest page of 100 runs (order_by=-id) of
# an account with $ENVS environments of $RUNS DAG runs each, served by a release build of
# Jade at 32 concurrent connections and at 1 (wrk), against the bare database work for the
# same page: per environment the newest 100 runs and a count, run by pgbench (prepared
# statements) at the same concurrency. Then deep pages at 1 connection: offset 90% of the
# runs, by id and by created_at, against the first page. Then what a refresh of the run index
# costs: the same page from a Jade that refreshes on every list. Everything runs on this machine,
# over loopback, on the local PostgreSQL. Writes bench/results/runs.md.
#
#   bench/runs.sh                      # 10 environments x 10,000 runs, 30 s per measurement
#   ENVS=3 RUNS=1000 DURATION=5 bench/runs.sh
set -euo pipefail
cd "$(dirname "$0")/.."

ENVS=${ENVS:-10}
RUNS=${RUNS:-10000}
UNFINISHED=${UNFINISHED:-20}
DURATION=${DURATION:-30}
PORT=${PORT:-4811}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
PREFIX=jade_bench
TOKEN=benchtoken0000000000000000000000000000
OUT=${OUT:-bench/results/runs.md}
WORK=$(mktemp -d)
trap 'kill "${JADE_PID:-0}" "${REFRESHING_PID:-0}" 2>/dev/null || true; [ -n "${KEEP_WORK:-}" ] || rm -rf "$WORK"' EXIT

need() { command -v "$1" >/dev/null || { echo "bench/runs.sh: $1 is required ($2)" >&2; exit 1; }; }
if ! command -v wrk >/dev/null && [ "$(id -u)" = 0 ]; then apt-get install -y -qq wrk >/dev/null; fi
need wrk "apt-get install wrk"
need pgbench "PostgreSQL's client tools"
need psql "PostgreSQL's client tools"

echo "building Jade (release)" >&2
cargo build --release --locked --bin jade >&2

echo "seeding $ENVS environments x $RUNS runs" >&2
for db in datacoves jade airflow; do
    psql -q -d postgres -c "DROP DATABASE IF EXISTS ${PREFIX}_$db WITH (FORCE)" -c "CREATE DATABASE ${PREFIX}_$db"
done
psql -q -v ON_ERROR_STOP=1 -d ${PREFIX}_datacoves -f tests/fixtures/sql/datacoves-schema.sql
psql -q -v ON_ERROR_STOP=1 -v token="$TOKEN" -d ${PREFIX}_datacoves -f bench/datacoves-seed.sql
psql -q -v ON_ERROR_STOP=1 -d ${PREFIX}_datacoves <<SQL
INSERT INTO projects_environment (id, project_id, name, slug, services, created_at, updated_at)
  SELECT i + 1, 1, 'env' || i, 'env' || i, '{"airflow": {"enabled": true}}', now(), now() FROM generate_series(0, $ENVS - 1) i;
SQL
: >"$WORK/page.sql"
for i in $(seq 0 $((ENVS - 1))); do
    {
        echo "CREATE SCHEMA env$i; SET search_path TO env$i;"
        cat tests/fixtures/sql/airflow-schema.sql
        cat <<SQL
INSERT INTO dag (dag_id, is_active, last_parsed_time, schedule_interval) VALUES ('daily', true, now(), '"@daily"'), ('hourly', true, now(), '"@hourly"');
-- Runs five minutes apart, the older ones finished (success and failed) and the newest
-- $UNFINISHED still queued or running; updated_at when each last changed, as Airflow sets it.
INSERT INTO dag_run (dag_id, run_id, state, queued_at, start_date, end_date, execution_date, run_type, updated_at)
  SELECT dag_id, run_id, state, queued, started, ended, queued, 'scheduled', coalesce(ended, started, queued)
  FROM (
    SELECT CASE WHEN g % 2 = 0 THEN 'daily' ELSE 'hourly' END AS dag_id, 'scheduled__' || g AS run_id,
           CASE WHEN g > $RUNS - $UNFINISHED THEN (ARRAY['running', 'queued'])[1 + g % 2]
                ELSE (ARRAY['success', 'failed'])[1 + g % 2] END AS state,
           now() - ($RUNS - g) * interval '5 minutes' AS queued,
           now() - ($RUNS - g) * interval '5 minutes' + interval '10 seconds' AS started,
           CASE WHEN g <= $RUNS - $UNFINISHED THEN now() - ($RUNS - g) * interval '5 minutes' + interval '2 minutes' END AS ended,
           g
    FROM generate_series(1, $RUNS) g
  ) r;
ANALYZE dag_run;
SQL
    } | psql -q -v ON_ERROR_STOP=1 -d ${PREFIX}_airflow
    cat >>"$WORK/page.sql" <<SQL
SELECT id, dag_id, run_id, state, queued_at, start_date, end_date FROM env$i.dag_run ORDER BY id DESC LIMIT 100;
SELECT count(*) FROM env$i.dag_run;
SQL
done

echo "starting Jade on :$PORT" >&2
mkdir -p "$WORK/storage"
env -i PATH="$PATH" PORT=$PORT RUST_LOG=warn \
    DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_jade" POOL_SIZE=16 \
    DATACOVES_DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_datacoves" DATACOVES_POOL_SIZE=8 \
    FERNET_KEY=$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \
    AIRFLOW_DB_URL_TEMPLATE="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_airflow?options=-csearch_path%3D{slug}" \
    AIRFLOW_POOL_SIZE=4 AUTH_VERIFIER=database STORAGE_ADAPTER=fs FS_STORAGE_ROOT="$WORK/storage" \
    target/release/jade serve 2>"$WORK/jade.log" &
JADE_PID=$!
# The same Jade refreshing the run index on every list (RUN_INDEX_REFRESH_MS=0): its latency
# above the first one's is what a refresh of the account's environments costs.
env -i PATH="$PATH" PORT=$((PORT + 1)) RUST_LOG=warn METRICS_ADDR= RUN_INDEX_REFRESH_MS=0 \
    DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_jade" POOL_SIZE=16 \
    DATACOVES_DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_datacoves" DATACOVES_POOL_SIZE=8 \
    FERNET_KEY=$(python3 -c 'import base64, os; print(base64.urlsafe_b64encode(os.urandom(32)).decode())') \
    AIRFLOW_DB_URL_TEMPLATE="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_airflow?options=-csearch_path%3D{slug}" \
    AIRFLOW_POOL_SIZE=4 AUTH_VERIFIER=database STORAGE_ADAPTER=fs FS_STORAGE_ROOT="$WORK/storage" \
    target/release/jade serve 2>"$WORK/jade-refreshing.log" &
REFRESHING_PID=$!
BASE="http://127.0.0.1:$PORT/api/v2/accounts/1/runs?limit=100"
URL="$BASE&order_by=-id"
DEEP=$((ENVS * RUNS * 9 / 10))
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/api/v2/healthcheck" >/dev/null && break; sleep 0.1; done
first=$(curl -s -o "$WORK/first.json" -w '%{time_total}' -H "Authorization: Token $TOKEN" "$URL")
python3 - "$WORK/first.json" "$ENVS" "$RUNS" <<'PY'
import json, sys
page = json.load(open(sys.argv[1]))
total = int(sys.argv[2]) * int(sys.argv[3])
assert page["extra"]["pagination"]["total_count"] == total, page.get("extra")
assert len(page["data"]) == 100, len(page["data"])
PY
for _ in 1 2 3 4 5; do curl -sf -o /dev/null -H "Authorization: Token $TOKEN" "$URL"; done

wrk_run() { # connections threads [url] -> "requests/s median_ms"
    wrk -t"$2" -c"$1" -d"${DURATION}s" --latency -H "Authorization: Token $TOKEN" "${3:-$URL}" >"$WORK/wrk.$1.txt"
    python3 - "$WORK/wrk.$1.txt" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
rps = float(re.search(r"Requests/sec:\s+([\d.]+)", text).group(1))
m = re.search(r"50%\s+([\d.]+)(us|ms|s)\b", text)
median = float(m.group(1)) * {"us": 0.001, "ms": 1, "s": 1000}[m.group(2)]
errors = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
assert not errors, text + open(sys.argv[1].rsplit("/", 1)[0] + "/jade.log").read()[-3000:]
print(f"{rps:.1f} {median:.2f}")
PY
}
pgbench_run() { # connections threads -> "pages/s median_ms"
    (cd "$WORK" && rm -f pgbench_log.* && pgbench -n -M prepared -c "$1" -j "$2" -T "$DURATION" -f page.sql -l \
        ${PREFIX}_airflow >"pgbench.$1.txt" 2>&1)
    python3 - "$WORK" "$1" <<'PY'
import glob, re, statistics, sys
work, clients = sys.argv[1], sys.argv[2]
text = open(f"{work}/pgbench.{clients}.txt").read()
tps = float(re.search(r"tps = ([\d.]+)", text).group(1))
latencies = [int(line.split()[2]) for path in glob.glob(f"{work}/pgbench_log.*") for line in open(path)]
print(f"{tps:.1f} {statistics.median(latencies) / 1000:.2f}")
PY
}

cpu_seconds() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / hz}' "/proc/$1/stat"; }
echo "measuring ($DURATION s each)" >&2
cpu_before=$(cpu_seconds "$JADE_PID")
read -r jade32 jade32_median < <(wrk_run 32 2)
jade_cpu=$(python3 -c "print(f'{$(cpu_seconds "$JADE_PID") - $cpu_before:.1f}')")
read -r bare32 bare32_median < <(pgbench_run 32 2)
read -r jade1 jade1_median < <(wrk_run 1 1)
read -r bare1 bare1_median < <(pgbench_run 1 1)
curl -sf -o "$WORK/deep.json" -H "Authorization: Token $TOKEN" "$BASE&order_by=-id&offset=$DEEP"
python3 - "$WORK/deep.json" "$ENVS" "$RUNS" "$DEEP" <<'PY'
import json, sys
page = json.load(open(sys.argv[1]))
envs, runs, deep = map(int, sys.argv[2:])
assert len(page["data"]) == min(100, envs * runs - deep), len(page["data"])
PY
read -r _ deep_id_median < <(wrk_run 1 1 "$BASE&order_by=-id&offset=$DEEP")
read -r _ first_created_median < <(wrk_run 1 1 "$BASE&order_by=-created_at")
read -r _ deep_created_median < <(wrk_run 1 1 "$BASE&order_by=-created_at&offset=$DEEP")
rss_kb=$(awk '/VmHWM/ {print $2}' /proc/$JADE_PID/status)
# What a refresh costs: every list of the second Jade first brings all $ENVS environments up to
# date (each: the index's summary and unfinished runs, then in Airflow the runs above the
# newest indexed id, the unfinished ones and those changed in the last 5 minutes, which scans
# dag_run because Airflow does not index updated_at, and a count).
REFRESHING="http://127.0.0.1:$((PORT + 1))/api/v2/accounts/1/runs?limit=100&order_by=-id"
for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$((PORT + 1))/api/v2/healthcheck" >/dev/null && break; sleep 0.1; done
for _ in 1 2 3; do curl -sf -o /dev/null -H "Authorization: Token $TOKEN" "$REFRESHING"; done
read -r refreshing1 refreshing1_median < <(wrk_run 1 1 "$REFRESHING")
read -r refreshing32 _ < <(wrk_run 32 2 "$REFRESHING")
refresh_ms=$(python3 -c "print(f'{$refreshing1_median - $jade1_median:.2f}')")
# The Airflow side of one environment's refresh, as PostgreSQL times it.
scan_ms=$(psql -d ${PREFIX}_airflow -Atc "EXPLAIN (ANALYZE, FORMAT JSON) SELECT id, dag_id, run_id, state, run_type, queued_at, start_date, end_date, updated_at FROM env0.dag_run WHERE id > $RUNS OR id = ANY(ARRAY(SELECT generate_series($((RUNS - UNFINISHED + 1)), $RUNS))) OR updated_at >= now() - interval '5 minutes'" |
    python3 -c "import json, sys; print(f'{json.load(sys.stdin)[0][\"Execution Time\"]:.2f}')")

ratio=$(python3 -c "print(f'{$jade32 / $bare32:.2f}')")
latency_ratio=$(python3 -c "print(f'{$jade1_median / $bare1_median:.2f}')")
deep_id_ratio=$(python3 -c "print(f'{$deep_id_median / $jade1_median:.2f}')")
deep_created_ratio=$(python3 -c "print(f'{$deep_created_median / $first_created_median:.2f}')")
verdict() { python3 -c "print('met' if $1 else 'NOT met')"; }
cat >"$OUT" <<MD
# Run list benchmark

\`bench/runs.sh\` (ENVS=$ENVS RUNS=$RUNS DURATION=$DURATION), $(date -u +%Y-%m-%d), on $(nproc) cores,
PostgreSQL $(psql -d postgres -Atc 'SHOW server_version'), Jade $(git rev-parse --short HEAD) release build.

One page: \`GET /api/v2/accounts/1/runs?order_by=-id&limit=100\` over $ENVS environments of
$RUNS DAG runs each (Airflow: one database, a schema per environment, via
\`AIRFLOW_DB_URL_TEMPLATE\`; token verified by \`AUTH_VERIFIER=database\`, cached).
Bare work: the same page's database work with pgbench \`-M prepared\`, per environment
\`SELECT … ORDER BY id DESC LIMIT 100\` and \`SELECT count(*)\`, one pgbench transaction per page.
Jade, the load generator and PostgreSQL share the machine.

| | pages/s at 32 connections | median latency at 1 connection |
|---|---|---|
| Jade | $jade32 | $jade1_median ms |
| bare database work | $bare32 | $bare1_median ms |
| Jade / bare | $ratio (target ≥ 0.9: $(verdict "$ratio >= 0.9")) | $latency_ratio (target ≤ 1.0: $(verdict "$latency_ratio <= 1.0")) |

Deep pages, median latency at 1 connection (\`offset=$DEEP\`, target ≤ 2× the first page):

| order | first page | page at offset $DEEP | ratio |
|---|---|---|---|
| \`-id\` | $jade1_median ms | $deep_id_median ms | $deep_id_ratio ($(verdict "$deep_id_ratio <= 2")) |
| \`-created_at\` | $first_created_median ms | $deep_created_median ms | $deep_created_ratio ($(verdict "$deep_created_ratio <= 2")) |

Jade pages in its run index (Jade database: one indexed query per page; an unfiltered list is
counted from per-environment totals kept with the rows, so it does less work than the bare
baseline, which counts every run), refreshed from each Airflow database at most once per
\`RUN_INDEX_REFRESH_MS\` (default 1000), then reads the page's 100 runs from Airflow by id. A
deep page starts from a remembered position (the sort key of every 500th run, found by one scan
and kept while the account's index does not change), so it reads at most 599 index entries.

What a refresh costs ($ENVS environments of $RUNS runs, the newest $UNFINISHED of each unfinished):
a Jade that refreshes on every list (\`RUN_INDEX_REFRESH_MS=0\`) answers the same page in
$refreshing1_median ms at 1 connection ($refreshing1 pages/s; $refreshing32 pages/s at 32 connections),
so bringing all $ENVS environments up to date costs **$refresh_ms ms** per list; with the default
\`RUN_INDEX_REFRESH_MS=1000\` that happens at most once a second per environment, whatever the
load. In Airflow, one environment's read of what changed (runs above the newest indexed id, the
unfinished ones, and those with \`updated_at\` in the last 5 minutes: a scan of \`dag_run\`, which
Airflow does not index by \`updated_at\`) takes $scan_ms ms as PostgreSQL times it.

Also measured: first listing after start (indexes and registers all $((ENVS * RUNS)) runs) ${first}s;
Jade at 32 connections median latency $jade32_median ms, its process using ${jade_cpu} CPU-seconds
of the ${DURATION} s run (the rest of the $(nproc) cores went to PostgreSQL and wrk); Jade at 1 connection $jade1 pages/s;
bare at 1 connection $bare1 pages/s; Jade's peak RSS $((rss_kb / 1024)) MiB.
MD
cat "$OUT"
[ -n "${KEEP_DB:-}" ] || for db in datacoves jade airflow; do psql -q -d postgres -c "DROP DATABASE IF EXISTS ${PREFIX}_$db WITH (FORCE)"; done
