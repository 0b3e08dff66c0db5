#!/usr/bin/env bash
# Prints the path of a Docker Compose v2 binary, for `make lint-deploy` and `make image-test`.
#
# Bookworm's `docker-compose` is v1 (Python), which reads the file differently; the CI machine
# has no compose plugin and no registry to fetch one from. Debian trixie packages Compose v2
# (`docker-compose` 2.26, a Go binary needing only libc 2.34+): this downloads that package with
# apt from deb.debian.org — apt checks the archive's signature against Debian's keyring, so
# the binary's provenance is the same as any installed package's — and unpacks it under
# target/compose-v2, without installing anything. Later runs reuse it.
#
#   scripts/compose-v2.sh      → target/compose-v2/docker-compose (prints the path)
set -euo pipefail
cd "$(dirname "$0")/.."

dir=$PWD/target/compose-v2
binary=$dir/docker-compose
if [[ -x $binary ]] && "$binary" version >/dev/null 2>&1; then
  echo "$binary"
  exit 0
fi

fail() { echo "compose-v2: FAIL: $*" >&2; exit 1; }
keyring=/usr/share/keyrings/debian-archive-keyring.gpg
[[ -f $keyring ]] || fail "no Debian archive keyring at $keyring"
rm -rf "$dir"
mkdir -p "$dir/apt/lists/partial" "$dir/apt/cache/archives/partial" "$dir/deb"
echo "deb [signed-by=$keyring] http://deb.debian.org/debian trixie main" >"$dir/apt/sources.list"
apt=(apt-get -qq -o "Dir::Etc::SourceList=$dir/apt/sources.list" -o Dir::Etc::SourceParts=/nonexistent
  -o "Dir::State::Lists=$dir/apt/lists" -o "Dir::Cache=$dir/apt/cache" -o Dir::State::status=/dev/null
  -o APT::Sandbox::User=root)
echo "compose-v2: fetching Debian trixie's docker-compose (Compose v2) with apt" >&2
"${apt[@]}" update >&2 || fail "apt-get update for trixie failed"
(cd "$dir/deb" && "${apt[@]}" download docker-compose >&2) || fail "apt-get download docker-compose failed"
dpkg-deb -x "$dir"/deb/docker-compose_*.deb "$dir/root" || fail "cannot unpack the package"
ln -s root/usr/libexec/docker/cli-plugins/docker-compose "$binary"
rm -rf "$dir/apt"
"$binary" version >&2 || fail "the unpacked docker-compose does not run"
echo "$binary"
