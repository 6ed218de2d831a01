# Release image: `jade serve`, configured by environment variables (see README.md).
#   docker build -t jade .
#   docker build --build-arg FEATURES=http,postgres,airflow,airflow-api,storage-s3 -t jade-s3 .
FROM rust:1.95-slim-bookworm AS build
ARG FEATURES=http,postgres,airflow,airflow-api,storage-minio,storage-s3,storage-blob,storage-fs
WORKDIR /src

# Dependencies first, in a layer of their own: built over an empty crate, so changing Jade's
# sources reuses it; only Cargo.toml, Cargo.lock or FEATURES rebuild it.
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
RUN mkdir -p src tests \
    && echo 'fn main() {}' > src/main.rs \
    && touch src/lib.rs \
    && for test in $(sed -n '/^\[\[test\]\]/{n;s/^name = "\(.*\)"/\1/p}' Cargo.toml); do touch "tests/$test.rs"; done \
    && cargo build --release --locked --no-default-features --features "$FEATURES" \
    && rm -rf src target/release/jade target/release/deps/jade-* target/release/deps/libjade-* \
        target/release/.fingerprint/jade-*

# Jade itself.
COPY migrations migrations
COPY src src
RUN cargo build --release --locked --no-default-features --features "$FEATURES" \
    && install -m 0755 target/release/jade /usr/local/bin/jade

FROM debian:bookworm-slim
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 jade \
    && useradd --system --uid 10001 --gid jade --home-dir /var/lib/jade --create-home jade
COPY --from=build /usr/local/bin/jade /usr/local/bin/jade
USER 10001:10001
WORKDIR /var/lib/jade
ENV PORT=4000 LOG_FORMAT=json METRICS_ADDR=0.0.0.0:9464
EXPOSE 4000 9464
# `jade healthcheck` GETs http://127.0.0.1:$PORT/api/v2/healthcheck (3 s timeout): exit 0 or 1.
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 CMD ["jade", "healthcheck"]
ENTRYPOINT ["jade"]
CMD ["serve"]
