#!/usr/bin/env bash
# `make static`, first half: build the binary the image ships — x86_64-unknown-linux-musl,
# release profile, statically linked — then hand it to scripts/static-check.sh, which proves it
# in an empty root.
#
# What the musl build needs, installed here when missing (CI runs this as root on Debian):
#   - the Rust target: `rustup target add x86_64-unknown-linux-musl`;
#   - a C compiler for musl (ring, the bundled SQLite and, for mail-sink, aws-lc-sys build C): Debian's
#     `musl-tools` (musl-gcc), which the cc crate picks up with no extra variables.
# If either cannot be had, it falls back to a static *glibc* build and says so loudly: that
# binary proves the code runs without a libc on disk, but it is not what the image ships
# (another libc, resolver and allocator).
set -euo pipefail
cd "$(dirname "$0")/.."

musl=x86_64-unknown-linux-musl
say() { echo "static-build: $*"; }
loud() { printf '\nstatic-build: ********************************************************\n'
         printf 'static-build: %s\n' "$@"
         printf 'static-build: ********************************************************\n\n'; }

have_target() { rustup target list --installed 2>/dev/null | grep -qx "$musl"; }
have_cc() { command -v musl-gcc >/dev/null; }

if ! have_target; then
  say "installing the Rust target $musl"
  rustup target add "$musl" || true
fi
if ! have_cc && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null; then
  say "installing musl-tools (musl-gcc) from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq musl-tools >/dev/null || true
fi

if have_target && have_cc; then
  target=$musl
  say "building api-monitor, fake-api and mail-sink for $target (the images' binaries)"
  # The same command as scripts/image-prebuilt.sh's, so the image build reuses this one.
  cargo build --release --target "$target" --target-dir target/static \
    -p api-monitor -p fake-api --bin api-monitor --bin fake-api --bin mail-sink
else
  target=x86_64-unknown-linux-gnu
  loud "FALLBACK: the musl target or musl-gcc is not available here." \
       "Building a static GLIBC binary instead: NOT the binary the image ships."
  # getrandom finds glibc's getrandom() with dlsym, which a static glibc binary cannot do: the
  # cfg makes it call getrandom() directly (see DEPENDENCIES.md).
  RUSTFLAGS='-C target-feature=+crt-static --cfg getrandom_backend="linux_getrandom"' \
    cargo build --release --target "$target" --target-dir target/static -p api-monitor
fi
bash scripts/static-check.sh "target/static/$target/release/api-monitor"
if [[ $target != "$musl" ]]; then
  loud "FALLBACK: the glibc static binary passed; the musl build was NOT proven."
fi
