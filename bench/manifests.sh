#!/usr/bin/env bash
# Benchmark of manifests (issue 10): Jade against nginx on the same machine, on the same
# bytes, in one run. A release build of `jade serve` with the fs and the s3 storage adapter
# (S3 = moto_server on loopback); nginx (Debian's nginx-light, installed here) with WebDAV
# PUT writing to disk. Measures:
#   - upload, trimmed download and full download: Jade's throughput / nginx's;
#   - Jade's peak RSS growth for one $SIZE_MB MB upload, one $BIG_MB MB upload and
#     four concurrent $SIZE_MB MB uploads;
#   - gzip and zstd downloads: bytes on the wire and time, against the uncompressed
#     download, on loopback and through a client reading at 100 Mbit/s;
#   - conditional GETs answered 304: their latency, and that no storage read happened
#     (Jade's own storage metrics).
# Writes bench/results/manifests.md.
#
#   bench/manifests.sh                       # 150 MB and 1000 MB manifests, 5 repetitions
#   SIZE_MB=20 BIG_MB=50 REPS=1 bench/manifests.sh
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE_MB=${SIZE_MB:-150}
BIG_MB=${BIG_MB:-1000}
REPS=${REPS:-5}
DL_REPS=${DL_REPS:-7}
PORT=${PORT:-4812}
METRICS_PORT=${METRICS_PORT:-4813}
NGINX_PORT=${NGINX_PORT:-4814}
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
PREFIX=jade_mbench
TOKEN=benchtoken0000000000000000000000000000
OUT=${OUT:-bench/results/manifests.md}
WORK=$(mktemp -d)
trap 'kill ${JADE_PID:-} ${MOTO_PID:-} 2>/dev/null || true; [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null; rm -rf "$WORK"' EXIT

missing=()
command -v nginx >/dev/null || missing+=(nginx-light)
command -v zstd >/dev/null || missing+=(zstd)
if [ ${#missing[@]} -gt 0 ]; then
    echo "installing ${missing[*]}" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
fi
echo "building Jade (release)" >&2
cargo build --release --locked --bin jade >&2
scripts/install-storage-servers.sh >/dev/null
# shellcheck disable=SC1091
source .tools/env

# The fixture with its nodes replicated up to $3 MB, `metadata` and `nodes` first, then the
# other members and padding (as large manifests are: most of the bytes are not kept).
make_manifest() {
    python3 - tests/fixtures/manifest.json "$1" "$2" <<'PY'
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
        f.write(f', "{member}": {json.dumps(fixture[member])}')
    macros = json.dumps(fixture["macros"])
    i = 0
    while f.tell() < target:
        f.write(f', "padding_{i}": {macros}')
        i += 1
    f.write("}")
PY
}
echo "writing ${SIZE_MB} MB and ${BIG_MB} MB manifests" >&2
make_manifest "$WORK/manifest.json" "$SIZE_MB"
make_manifest "$WORK/big.json" "$BIG_MB"
BYTES=$(stat -c %s "$WORK/manifest.json")
BIG_BYTES=$(stat -c %s "$WORK/big.json")

for db in datacoves jade; do
    psql -q -d postgres -c "DROP DATABASE IF EXISTS ${PREFIX}_$db WITH (FORCE)" -c "CREATE DATABASE ${PREFIX}_$db"
done
psql -q -v ON_ERROR_STOP=1 -d ${PREFIX}_datacoves -f tests/fixtures/sql/datacoves-schema.sql
psql -q -v ON_ERROR_STOP=1 -v token="$TOKEN" -d ${PREFIX}_datacoves -f bench/datacoves-seed.sql
psql -q -v ON_ERROR_STOP=1 -d ${PREFIX}_datacoves \
    -c "INSERT INTO projects_environment (id, project_id, name, slug, services) VALUES (1, 1, 'bench', 'bench', '{}')"

# nginx: WebDAV PUT to disk and static GET, one worker per core, no access log.
mkdir -p "$WORK/nginx/root" "$WORK/nginx/tmp"
cat >"$WORK/nginx/nginx.conf" <<CONF
daemon on;
user $(id -un) $(id -gn);
pid $WORK/nginx.pid;
worker_processes auto;
error_log $WORK/nginx/error.log;
events { worker_connections 256; }
http {
    access_log off;
    client_body_temp_path $WORK/nginx/tmp;
    root $WORK/nginx/root;
    client_max_body_size 0;
    # nginx's own defaults (sendfile off: the body passes through user space, as Jade's does)
    server {
        listen 127.0.0.1:$NGINX_PORT;
        location / { dav_methods PUT; create_full_put_path on; }
    }
    # and with sendfile, as Debian's default configuration turns it on.
    server {
        listen 127.0.0.1:$((NGINX_PORT + 1));
        sendfile on;
    }
}
CONF
nginx -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx"
NGINX="http://127.0.0.1:$NGINX_PORT"

# CPU time (user + system, clock ticks) of a process so far.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# CPU seconds per upload of process $1 since it stood at $2 ticks, over $REPS uploads.
cpu_per_upload() {
    awk -v t="$(($(cpu_ticks "$1") - $2))" -v hz="$(getconf CLK_TCK)" -v n="$REPS" 'BEGIN {print t / hz / n}'
}
kb() { awk -v key="$2:" '$1 == key {print $2}' "/proc/$1/status"; }
# Median of the numbers on stdin.
median() { sort -g | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }
# Seconds one download takes (curl's arguments after the output file), median of $DL_REPS.
timed() {
    local out=$1
    shift
    for _ in $(seq 1 "$DL_REPS"); do
        curl -sf -o "$out" -w '%{time_total}\n' "$@"
    done | median
}
# Peak RSS growth of Jade (KiB) while running the command given: VmHWM after it, minus
# VmRSS before it, the peak being reset first.
rss_growth() {
    echo 5 >"/proc/$JADE_PID/clear_refs"
    local before
    before=$(kb "$JADE_PID" VmRSS)
    "$@"
    echo $(($(kb "$JADE_PID" VmHWM) - before))
}
storage_gets() {
    curl -sf "http://127.0.0.1:$METRICS_PORT/metrics" |
        awk '/^jade_storage_operation_duration_seconds_count/ && /operation="get"/ {n += $2} END {print n + 0}'
}

start_jade() {
    env -i PATH="$PATH" PORT=$PORT RUST_LOG=warn CONNECT_TO_AIRFLOW=false AUTH_VERIFIER=database \
        METRICS_ADDR="127.0.0.1:$METRICS_PORT" MAX_UPLOAD_BYTES=4000000000 \
        DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_jade" \
        DATACOVES_DB_URL="postgres://$PGUSER@$PGHOST:$PGPORT/${PREFIX}_datacoves" \
        TMPDIR="$WORK" "$@" target/release/jade serve 2>>"$WORK/jade.log" &
    JADE_PID=$!
    for _ in $(seq 1 100); do curl -sf "http://127.0.0.1:$PORT/api/v2/healthcheck" >/dev/null && return; sleep 0.1; done
    echo "Jade did not start:" >&2
    cat "$WORK/jade.log" >&2
    exit 1
}

# Every timed upload starts with no dirty page left to write back from the steps before
# it (nginx's PUTs leave their files unsynced): each pays for its own writes only.
settle() { sync; }
# Seconds since the epoch, to the nanosecond, and since such a time.
now() { date +%s.%N; }
elapsed() { awk -v end="$(now)" -v start="$1" 'BEGIN {print end - start}'; }

AUTH=(-H "Authorization: Token $TOKEN")
BASE="http://127.0.0.1:$PORT/api/v2/datacoves/manifests"
# Uploads $2 with tag $1; its time goes to $WORK/upload-time.
upload() {
    curl -sf -o /dev/null -w '%{time_total}' "${AUTH[@]}" -F environment_slug=bench -F "tag=$1" -F "file=@$2" "$BASE" \
        >"$WORK/upload-time"
}
tag() { echo "$1-$(date +%s%N)"; }

# nginx first: the same bytes, PUT and GET.
echo "measuring nginx" >&2
nginx_put=$(for _ in $(seq 1 "$REPS"); do
    settle
    curl -sf -o /dev/null -w '%{time_total}\n' -T "$WORK/manifest.json" "$NGINX/m-$RANDOM.json"
done | median)
# The same PUT, then the file synced to disk (`sync FILE` = fsync): the durability Jade's fs
# storage gives before it answers.
nginx_durable=$(for i in $(seq 1 "$REPS"); do
    settle
    start=$(now)
    curl -sf -o /dev/null -T "$WORK/manifest.json" "$NGINX/durable-$i.json"
    sync "$WORK/nginx/root/durable-$i.json"
    elapsed "$start"
done | median)
curl -sf -T "$WORK/manifest.json" "$NGINX/full.json"
nginx_full=$(timed /dev/null "$NGINX/full.json")
SENDFILE="http://127.0.0.1:$((NGINX_PORT + 1))"
sendfile_full=$(timed /dev/null "$SENDFILE/full.json")

rows=""
memory=""
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
        # What moto itself takes to accept the bytes (PUT with curl, public so that curl can
        # GET them back): the full body alone, and the full and the trimmed body at once, as
        # Jade stores them.
        head -c "$((BYTES * 4 / 5))" "$WORK/manifest.json" >"$WORK/trimmed-size.bin"
        moto_one=$(for i in $(seq 1 "$REPS"); do
            curl -sf -o /dev/null -w '%{time_total}\n' -H "x-amz-acl: public-read" -T "$WORK/manifest.json" \
                "http://127.0.0.1:$MOTO_PORT/jade-bench/raw-$i"
        done | median)
        moto_get=$(timed /dev/null "http://127.0.0.1:$MOTO_PORT/jade-bench/raw-1")
        moto_both=$(for i in $(seq 1 "$REPS"); do
            start=$(now)
            curl -sf -o /dev/null -T "$WORK/manifest.json" "http://127.0.0.1:$MOTO_PORT/jade-bench/full-$i" &
            curl -sf -o /dev/null -T "$WORK/trimmed-size.bin" "http://127.0.0.1:$MOTO_PORT/jade-bench/cut-$i"
            wait
            elapsed "$start"
        done | median)
        start_jade STORAGE_ADAPTER=s3 S3_BUCKET_NAME=jade-bench S3_ACCESS_KEY=bench S3_SECRET_ACCESS_KEY=bench \
            S3_REGION=us-east-1 S3_ENDPOINT_URL="http://127.0.0.1:$MOTO_PORT"
    fi
    echo "measuring Jade on $backend" >&2
    up_times=()
    up_kb=()
    jade_ticks=$(cpu_ticks "$JADE_PID")
    if [ "$backend" = s3 ]; then moto_ticks=$(cpu_ticks "$MOTO_PID"); fi
    for _ in $(seq 1 "$REPS"); do
        t=$(tag "up-$backend")
        settle
        up_kb+=("$(rss_growth upload "$t" "$WORK/manifest.json")")
        up_times+=("$(cat "$WORK/upload-time")")
    done
    # CPU seconds per upload: Jade's, and on S3 moto_server's.
    if [ "$backend" = s3 ]; then
        moto_cpu=$(cpu_per_upload "$MOTO_PID" "$moto_ticks")
        s3_jade_cpu=$(cpu_per_upload "$JADE_PID" "$jade_ticks")
    else
        fs_jade_cpu=$(cpu_per_upload "$JADE_PID" "$jade_ticks")
    fi
    up=$(printf '%s\n' "${up_times[@]}" | median)
    one_kb=$(printf '%s\n' "${up_kb[@]}" | median)
    last="$BASE?environment_slug=bench&tag=$t"
    # Timed to /dev/null like nginx's; then fetched once more to check the bytes.
    trimmed=$(timed /dev/null "${AUTH[@]}" "$last")
    full=$(timed /dev/null "${AUTH[@]}" "$last&trimmed=false")
    curl -sf -o "$WORK/trimmed.json" "${AUTH[@]}" "$last"
    curl -sf -o "$WORK/full.json" "${AUTH[@]}" "$last&trimmed=false"
    cmp -s "$WORK/full.json" "$WORK/manifest.json" || { echo "the full manifest did not round-trip" >&2; exit 1; }
    trimmed_bytes=$(stat -c %s "$WORK/trimmed.json")
    curl -sf -T "$WORK/trimmed.json" "$NGINX/trimmed.json"
    nginx_trimmed=$(timed /dev/null "$NGINX/trimmed.json")
    sendfile_trimmed=$(timed /dev/null "$SENDFILE/trimmed.json")
    durable="-"
    [ "$backend" = fs ] && durable=$nginx_durable
    rows+="| $backend | upload (multipart; validate, trim, store both) | $BYTES | $up | $nginx_put | $durable |"$'\n'
    rows+="| $backend | trimmed download | $trimmed_bytes | $trimmed | $nginx_trimmed | $sendfile_trimmed |"$'\n'
    rows+="| $backend | full download | $BYTES | $full | $nginx_full | $sendfile_full |"$'\n'

    settle
    big_kb=$(rss_growth upload "$(tag "big-$backend")" "$WORK/big.json")
    four() {
        local pids=()
        for _ in 1 2 3 4; do
            upload "$(tag "four-$backend")" "$WORK/manifest.json" &
            pids+=($!)
        done
        for pid in "${pids[@]}"; do wait "$pid"; done
    }
    settle
    four_kb=$(rss_growth four)
    memory+="| $backend | $one_kb | $big_kb | $four_kb |"$'\n'

    if [ "$backend" = fs ]; then
        echo "measuring compression and conditional GETs" >&2
        compressed=""
        for encoding in identity gzip zstd; do
            for what in full trimmed; do
                url="$last"
                [ "$what" = full ] && url="$last&trimmed=false"
                seconds=$(timed "$WORK/wire" "${AUTH[@]}" -H "Accept-Encoding: $encoding" "$url")
                wire=$(stat -c %s "$WORK/wire")
                case $encoding in
                    gzip) gzip -dc "$WORK/wire" >"$WORK/decoded" ;;
                    zstd) zstd -qdc "$WORK/wire" >"$WORK/decoded" ;;
                    *) cp "$WORK/wire" "$WORK/decoded" ;;
                esac
                cmp -s "$WORK/decoded" "$WORK/$what.json" || { echo "$encoding $what did not decode to the stored bytes" >&2; exit 1; }
                slow=$(curl -sf -o /dev/null -w '%{time_total}' --limit-rate 12500000 "${AUTH[@]}" -H "Accept-Encoding: $encoding" "$url")
                compressed+="| $what | $encoding | $wire | $seconds | $slow |"$'\n'
            done
        done
        latest="http://127.0.0.1:$PORT/api/v2/datacoves/projects/benchproj/latest-manifest"
        latest_etag=$(curl -sf -o /dev/null -D - "${AUTH[@]}" "$latest" | awk 'tolower($1) == "etag:" {print $2}' | tr -d '\r')
        [ -n "$latest_etag" ] || { echo "no ETag on the latest manifest" >&2; exit 1; }
        gets_before=$(storage_gets)
        # 200 conditional GETs on one keep-alive connection.
        urls=()
        for _ in $(seq 1 200); do urls+=(-o /dev/null "$latest"); done
        statuses=$(curl -s "${AUTH[@]}" -H "If-None-Match: $latest_etag" -w '%{http_code} %{time_total}\n' "${urls[@]}")
        gets_after=$(storage_gets)
        not_modified=$(echo "$statuses" | awk '$1 == 304' | wc -l)
        latency=$(echo "$statuses" | awk '{print $2 * 1000}' | median)
        p99=$(echo "$statuses" | awk '{print $2 * 1000}' | sort -g | awk '{v[NR] = $1} END {print v[int(NR * 0.99)]}')
    fi
    kill "$JADE_PID"
    wait "$JADE_PID" 2>/dev/null || true
    if [ -n "${MOTO_PID:-}" ]; then
        kill "$MOTO_PID"
        wait "$MOTO_PID" 2>/dev/null || true
        MOTO_PID=
    fi
done

python3 - "$OUT" "$SIZE_MB" "$BIG_MB" "$BYTES" "$BIG_BYTES" "$REPS" "$(git rev-parse --short HEAD)" \
    "$not_modified" "$latency" "$p99" "$((gets_after - gets_before))" "$DL_REPS" "$moto_one" "$moto_both" "$moto_get" "$moto_cpu" "$s3_jade_cpu" "$fs_jade_cpu" <<PY
import sys
out, size_mb, big_mb, size, big, reps, rev, not_modified, latency, p99, gets, dl_reps, moto_one, moto_both, moto_get, moto_cpu, s3_jade_cpu, fs_jade_cpu = sys.argv[1:]
size, big = int(size), int(big)
mb = lambda n: float(n) / 1e6
mib = lambda kb: f"{max(int(kb), 0) / 1024:.0f} MiB"
lines = []
for row in """$rows""".strip().splitlines():
    _, backend, what, n, jade, nginx, sendfile, _ = [c.strip() for c in row.split("|")]
    jade, nginx = float(jade), float(nginx)
    with_sendfile = "-" if sendfile == "-" else f"{float(sendfile):.2f} s ({float(sendfile) / jade:.2f}x)"
    lines.append(f"| {backend} | {what} | {mb(n):.0f} MB | {jade:.2f} s ({mb(n) / jade:.0f} MB/s) | "
                 f"{nginx:.2f} s ({mb(n) / nginx:.0f} MB/s) | **{nginx / jade:.2f}x** | {with_sendfile} |")
memory = []
for row in """$memory""".strip().splitlines():
    _, backend, one, big_kb, four, _ = [c.strip() for c in row.split("|")]
    memory.append(f"| {backend} | {mib(one)} | {mib(big_kb)} | {mib(four)} |")
compressed = []
plain = {}
for row in """$compressed""".strip().splitlines():
    _, what, encoding, wire, seconds, slow, _ = [c.strip() for c in row.split("|")]
    wire, seconds, slow = int(wire), float(seconds), float(slow)
    plain.setdefault(what, (wire, slow))
    ratio = plain[what][0] / wire
    compressed.append(f"| {what} | {encoding} | {mb(wire):.1f} MB ({ratio:.1f}x smaller) | {seconds:.2f} s | "
                      f"{slow:.2f} s ({plain[what][1] / slow:.1f}x faster) |")
nl = "\n"
text = f"""# Manifest benchmark

\`bench/manifests.sh\` (SIZE_MB={size_mb}, BIG_MB={big_mb}, REPS={reps}), Jade {rev}, on $(nproc) cores.
Release build of \`jade serve\`, PostgreSQL on loopback, S3 = moto_server on loopback; nginx
{"$(nginx -v 2>&1 | cut -d/ -f2)"} (nginx-light) with WebDAV \`PUT\` to disk and static \`GET\`, on the same machine
and the same bytes. The manifest is the fixture with its nodes replicated: {size} bytes
({big} for the large one). Times are the median of {reps} \`curl\` runs for uploads and
{dl_reps} for downloads; every timed upload starts after a \`sync\`, so none pays for the writes
of the one before. Jade's upload is a multipart \`POST\` that validates the JSON, trims it and
stores the full and the trimmed body (on fs: both synced to disk before it answers); nginx's
is a \`PUT\` of the same file (to a temporary file renamed into place, no fsync). Ratio =
Jade's throughput / nginx's, nginx with its own defaults. The last column is, for downloads,
nginx's \`GET\` with \`sendfile on\` (the kernel sends the file; Debian's configuration turns it
on) and, for the fs upload, nginx's \`PUT\` followed by an fsync of the file (\`sync FILE\`),
the durability Jade gives; Jade's ratio to it.

| storage | request | body | Jade | nginx | ratio | nginx variant (ratio) |
|---|---|---|---|---|---|---|
{nl.join(lines)}

On fs, Jade used {float(fs_jade_cpu):.2f} s of CPU per upload (receiving, writing two files, validating
and trimming), on a machine whose two cores curl shares.

On S3, uploads and downloads are bounded by moto_server, a Python server: by itself it takes
{float(moto_one):.2f} s to accept a \`PUT\` of the {mb(size):.0f} MB body from curl, {float(moto_both):.2f} s for the full body and
one of the trimmed body's size at once (as Jade stores them), and {float(moto_get):.2f} s to answer a \`GET\` of
the full body. During Jade's S3 uploads moto_server used {float(moto_cpu):.2f} s of CPU per upload and
Jade {float(s3_jade_cpu):.2f} s: the time goes to moto.

## Memory

Peak RSS growth of the Jade process: VmHWM after the uploads minus VmRSS before them (the
peak reset first through \`/proc/<pid>/clear_refs\`). Targets: ≤ 64 MiB for one upload of
either size, ≤ 128 MiB for four concurrent ones.

| storage | one {size_mb} MB upload | one {big_mb} MB upload | four concurrent {size_mb} MB uploads |
|---|---|---|---|
{nl.join(memory)}

## Compressed downloads (fs)

\`Accept-Encoding\` as given; bytes on the wire as received (decoded and compared with the
stored bytes). The last column is one download through a client reading at 100 Mbit/s
(\`curl --limit-rate 12500000\`), as across a WAN. The benchmark manifest repeats the
fixture's nodes, so it compresses far better than a real one: the fixture itself shrinks
about 8.5x with zstd (level 1) and 6x with gzip (level 1).

| body | encoding | on the wire | loopback | at 100 Mbit/s |
|---|---|---|---|---|
{nl.join(compressed)}

## Conditional GETs (fs)

200 \`GET …/projects/benchproj/latest-manifest\` with \`If-None-Match\` set to its ETag, on one
keep-alive connection: {not_modified} answered 304; latency median {float(latency):.2f} ms,
p99 {float(p99):.2f} ms. Storage reads during them (Jade's
\`jade_storage_operation_duration_seconds_count{{operation="get"}}\`): **{gets}**.
"""
open(out, "w").write(text)
print(text)
PY
nginx -s stop -c "$WORK/nginx/nginx.conf" -p "$WORK/nginx" 2>/dev/null || true
for db in datacoves jade; do psql -q -d postgres -c "DROP DATABASE IF EXISTS ${PREFIX}_$db WITH (FORCE)"; done
