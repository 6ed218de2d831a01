# Release image: `jade serve`, configured by environment variables (see README.md).
#   docker build -t jade .
#   docker build --build-arg FEATURES=http,postgres,airflow,storage-s3 -t jade-s3 .
FROM rust:1.95-slim-bookworm AS build
ARG FEATURES=http,postgres,airflow,storage-minio,storage-s3,storage-blob,storage-fs
WORKDIR /src
COPY Cargo.toml Cargo.lock rustfmt.toml clippy.toml ./
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
ENV PORT=4000 LOG_FORMAT=json
EXPOSE 4000
ENTRYPOINT ["jade"]
CMD ["serve"]
