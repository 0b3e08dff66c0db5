# syntax=docker/dockerfile:1
#
# api-monitor images: a fully static musl binary on an empty (`scratch`) base.
#
#   docker build -t api-monitor .                                   # the monitor (last stage)
#   docker build --target fake-api -t api-monitor-fake-api .        # the fake health API
#   docker build --target mail-sink -t api-monitor-mail-sink .      # an SMTP sink printing mail
#
# The build stage compiles the dependencies from the manifests alone first (stub sources), so
# editing the code recompiles only the two workspace crates; the cargo registry is a BuildKit
# cache mount. The release profile of Cargo.toml (opt-level z, LTO, one codegen unit, panic
# unwind so the probe can catch a panicking HTTP client, strip) applies as is. The `bench`
# workspace member is never built here; only its manifest (and a stub) must exist.

# Keep in step with RUST_TOOLCHAIN in .github/workflows/ci.yml. (The locked dependencies need
# at least Rust 1.89.)
ARG RUST_VERSION=1.95

FROM rust:${RUST_VERSION}-alpine AS build
# Alpine's Rust is a native musl toolchain, so x86_64-unknown-linux-musl links statically by
# default. aws-lc-sys, ring and the bundled SQLite are C: gcc ships with the image, musl-dev
# adds the libc headers and start files. No cmake, perl or OpenSSL is needed. (Not pinned to an
# apk version: the base image's Alpine release moves with the tag, and its repo with it.)
# hadolint ignore=DL3018
RUN apk add --no-cache musl-dev
WORKDIR /src
ARG RUST_TARGET=x86_64-unknown-linux-musl
ENV CARGO_TERM_COLOR=never

# 1. Dependencies only: this layer is rebuilt when a manifest or the lock file changes.
COPY Cargo.toml Cargo.lock build.rs ./
COPY .cargo .cargo
COPY fake_api/Cargo.toml fake_api/
COPY bench/Cargo.toml bench/
COPY testkit/Cargo.toml testkit/
RUN mkdir -p src fake_api/src/bin bench/src testkit/src \
 && for f in src/main.rs fake_api/src/main.rs fake_api/src/bin/mail-sink.rs bench/src/main.rs; do \
      echo 'fn main() {}' > "$f"; done \
 && touch src/lib.rs fake_api/src/lib.rs testkit/src/lib.rs
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    cargo build --release --locked --target "$RUST_TARGET" \
      -p api-monitor -p fake-api --bin api-monitor --bin fake-api --bin mail-sink

# 2. The real sources. COPY keeps the files' original mtimes, which are older than the stub
#    build above, so the crate roots are touched to make cargo rebuild the two crates.
COPY sql sql
COPY src src
COPY fake_api/src fake_api/src
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    touch src/lib.rs src/main.rs fake_api/src/lib.rs fake_api/src/main.rs \
          fake_api/src/bin/mail-sink.rs \
 && cargo build --release --locked --target "$RUST_TARGET" \
      -p api-monitor -p fake-api --bin api-monitor --bin fake-api --bin mail-sink \
 && mkdir -p /out \
 && for bin in api-monitor fake-api mail-sink; do \
      cp "target/$RUST_TARGET/release/$bin" /out/; done \
 && /out/api-monitor --version \
 && /out/fake-api --help >/dev/null \
 && /out/mail-sink --help >/dev/null

# Directories for the empty image: /data (the SQLite default) owned by the runtime user,
# /tmp world-writable with the sticky bit (SQLite may put temporary files there).
RUN mkdir -p /rootfs-data/data /rootfs-tmp/tmp \
 && chown 65534:65534 /rootfs-data/data \
 && chmod 0750 /rootfs-data/data \
 && chmod 1777 /rootfs-tmp/tmp


# ---- final stages ----------------------------------------------------------------------------
# Everything below takes only /out/{api-monitor,fake-api,mail-sink}, /rootfs-data and /rootfs-tmp
# from the `build` stage. scripts/image-prebuilt.sh builds these same stages, this very text, from
# binaries built on the host (`make static`), with no base image to pull.

# fake-api: the scriptable fake health API, for the compose demo. Listens on 0.0.0.0:8000.
# It leaves SIGTERM at its default action, which PID 1 ignores: run it with `--init`
# (compose: `init: true`) so `docker stop` is immediate.
FROM scratch AS fake-api
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="api-monitor fake-api" \
      org.opencontainers.image.description="Scriptable fake health API for demos and tests of api-monitor (POST /control/<mode>)." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/fake-api /fake-api
ENV FAKE_API_BIND=0.0.0.0 \
    FAKE_API_PORT=8000
EXPOSE 8000
USER 65534:65534
ENTRYPOINT ["/fake-api"]


# mail-sink: an SMTP server that accepts every message and prints it on stdout (`docker logs`),
# for demos and the image test (scripts/image-test.sh). Listens on 0.0.0.0:2525. Like fake-api,
# run it with `--init`.
FROM scratch AS mail-sink
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="api-monitor mail-sink" \
      org.opencontainers.image.description="SMTP sink that prints every message it receives, for demos and tests of api-monitor." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/mail-sink /mail-sink
EXPOSE 2525
USER 65534:65534
ENTRYPOINT ["/mail-sink", "--bind", "0.0.0.0", "--port", "2525"]


# api-monitor: the default target. Only the binary, /data and /tmp; no shell, no libc, no CA
# bundle (rustls carries the Mozilla roots). Names resolve through the /etc/hosts and
# /etc/resolv.conf that Docker mounts into every container.
#
# /metrics, /healthz and the status page are served on 9898 inside the container (LISTEN; set
# LISTEN= to turn them off, and publish the port to reach them from outside). The
# HEALTHCHECK asks that /healthz with `check --healthz` (exec form: there is no shell): it
# judges the monitor itself — probing on schedule, the state owner keeping up — and stays
# healthy through the outages of the API it reports. (Plain `check` judges the API.)
FROM scratch AS api-monitor
ARG VERSION=0.1.0
LABEL org.opencontainers.image.title="api-monitor" \
      org.opencontainers.image.description="A small synchronous daemon that watches an HTTP health API and emails support on outage and recovery." \
      org.opencontainers.image.licenses="MIT" \
      org.opencontainers.image.version="${VERSION}"
COPY --from=build /out/api-monitor /api-monitor
COPY --from=build /rootfs-tmp/ /
COPY --from=build --chown=65534:65534 /rootfs-data/ /
# The image's default store: SQLite on the volume. Set DATABASE_URL=mysql://... for MySQL.
ENV DATABASE_URL=sqlite:///data/api-monitor.db \
    LISTEN=0.0.0.0:9898
EXPOSE 9898
VOLUME ["/data"]
WORKDIR /data
USER 65534:65534
HEALTHCHECK --interval=30s --timeout=10s --start-period=15s --retries=3 \
    CMD ["/api-monitor", "check", "--healthz"]
ENTRYPOINT ["/api-monitor"]
CMD ["run"]
