#!/usr/bin/env bash
# Builds the images' final stages — the `FROM scratch` api-monitor, fake-api and mail-sink stages of the
# Dockerfile, its own text below the "final stages" marker — from musl binaries built on this
# host, with no base image to pull and no BuildKit (Debian's docker.io has neither a registry
# here nor buildx). The Dockerfile's `build` stage is replaced by a scratch stage holding what
# the final stages copy from it: /out/{api-monitor,fake-api,mail-sink}, /rootfs-data/data
# (uid 65534, 0750) and /rootfs-tmp/tmp (1777).
#
#   scripts/image-prebuilt.sh [IMAGE] [FAKE_API_IMAGE] [MAIL_SINK_IMAGE]
#
# Uses DOCKER (default `docker`, e.g. `docker -H unix:///tmp/x/sock`).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${1:-api-monitor:local}
fake_image=${2:-api-monitor-fake-api:local}
sink_image=${3:-api-monitor-mail-sink:local}
docker=${DOCKER:-docker}
target=x86_64-unknown-linux-musl
bins=target/static/$target/release

say() { echo "image-prebuilt: $*"; }
fail() { echo "image-prebuilt: FAIL: $*" >&2; exit 1; }

rustup target list --installed 2>/dev/null | grep -qx "$target" ||
  fail "the Rust target $target is not installed (make static installs it)"
say "building api-monitor, fake-api and mail-sink for $target"
# The same command as scripts/static-build.sh's, so one reuses the other's build.
cargo build --release --target "$target" --target-dir target/static \
  -p api-monitor -p fake-api --bin api-monitor --bin fake-api --bin mail-sink

context=$(mktemp -d)
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/out" "$context/rootfs-data/data" "$context/rootfs-tmp/tmp"
cp "$bins/api-monitor" "$bins/fake-api" "$bins/mail-sink" "$context/out/"
chmod 0750 "$context/rootfs-data/data"
chmod 1777 "$context/rootfs-tmp/tmp"
{
  echo "FROM scratch AS build"
  echo "COPY out /out"
  echo "COPY rootfs-tmp /rootfs-tmp"
  echo "COPY --chown=65534:65534 rootfs-data /rootfs-data"
  sed -n '/^# ---- final stages/,$p' Dockerfile
} >"$context/Dockerfile"
grep -q '^FROM scratch AS api-monitor' "$context/Dockerfile" ||
  fail "the Dockerfile has no final-stages marker followed by the api-monitor stage"

# build STAGE IMAGE: the legacy builder's output (and its deprecation notice) only on failure.
build() {
  local out
  out=$(DOCKER_BUILDKIT=0 $docker build -q --target "$1" -t "$2" "$context" 2>&1) ||
    fail "docker build --target $1 failed:"$'\n'"$out"
}
build fake-api "$fake_image"
build mail-sink "$sink_image"
build api-monitor "$image"
for i in "$image" "$fake_image" "$sink_image"; do
  size=$($docker image inspect -f '{{.Size}}' "$i")
  say "$i: $size bytes ($(awk -v b="$size" 'BEGIN { printf "%.1f MiB", b / 1048576 }'))"
done
