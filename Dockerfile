# IRIA News: one image for `iria-news serve`, `iria-news worker` and `iria-news migrate`.
#
#   docker build -t iria-news .
#   docker run --rm -p 8080:8080 iria-news                # SQLite + .eml files, as on a laptop
#   docker-compose up --scale worker=3                    # PostgreSQL, Mailpit, 3 workers
#
# See docs/deploying.md.

# --- build ----------------------------------------------------------------------------------
FROM rust:1-bookworm AS build

# The binary links OpenSSL (SMTP TLS, and the bundled libpq); SQLite and libpq are compiled from
# source by their crates. The full bookworm image has most of this already; saying it keeps the
# build working if the base image ever slims down.
RUN apt-get update \
 && apt-get install -y --no-install-recommends pkg-config libssl-dev \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /src
# Everything the build reads: Cargo.toml and Cargo.lock, src/, migrations/ (embedded in the
# binary) and templates/ (compiled in by askama). .dockerignore keeps target/, .git/ and local
# databases out.
COPY . .
# The release build: keep this line the same as the release build command in README.md.
# --locked builds exactly what Cargo.lock says.
RUN cargo build --release --locked
# The release profile keeps line tables for profiling (most of the binary's size); the image
# ships the binary without them, and /src/iria-news.debug keeps them apart for whoever needs
# symbolised backtraces (`docker build --target build`, then copy it out).
RUN objcopy --only-keep-debug target/release/iria-news /src/iria-news.debug \
 && objcopy --strip-debug --strip-unneeded --add-gnu-debuglink=/src/iria-news.debug \
      target/release/iria-news /src/iria-news

# --- runtime --------------------------------------------------------------------------------
FROM debian:bookworm-slim

RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates libssl3 \
 && rm -rf /var/lib/apt/lists/*

# A non-root user with a fixed uid, so that volume ownership is predictable.
RUN groupadd --system --gid 10001 iria \
 && useradd --system --uid 10001 --gid iria --home-dir /var/lib/iria-news --no-create-home \
      --shell /usr/sbin/nologin iria \
 && mkdir -p /var/lib/iria-news \
 && chown iria:iria /var/lib/iria-news

COPY --from=build /src/iria-news /usr/local/bin/iria-news

# The working folder: with the default settings the SQLite database (iria-news.db), its
# generated key (iria-news.db.secret) and outbox/ are written here. Mount a volume on it to keep
# them; with PostgreSQL nothing is written here.
WORKDIR /var/lib/iria-news
USER 10001:10001

ENV IRIA_LISTEN=0.0.0.0:8080
EXPOSE 8080

# GET /health answers 200 when the database answers. No curl in the image: bash's /dev/tcp.
# Only `serve` listens; docker-compose.yml turns this off for `worker` and `migrate`.
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s --retries=3 \
  CMD ["bash", "-c", "exec 3<>/dev/tcp/127.0.0.1/8080 && printf 'GET /health HTTP/1.0\\r\\n\\r\\n' >&3 && grep -q '200 OK' <&3"]

ENTRYPOINT ["iria-news"]
CMD ["serve"]
