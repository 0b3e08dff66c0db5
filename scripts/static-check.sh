#!/usr/bin/env bash
# `make static`, second half: prove that a static api-monitor binary runs alone in an empty root
# directory — no libc, no /etc, no /dev, nothing but the binary, like the `scratch` image.
#
#   scripts/static-check.sh [BINARY]      default: the `make static` build
#
# 1. the ELF has no interpreter and no shared-library dependencies (readelf, file, ldd);
# 2. `check` against fake-api exits 0 with an OK line — by IP, and by host name through an
#    /etc/hosts in the root (the libc's resolver, as in a container) — and exits 1 once
#    fake-api is switched down;
# 3. `run` with SQLite in /data records the first state and an outage, and exits 0 on SIGTERM.
#
# The empty root is entered with chroot as uid/gid 65534 (the image's user) when run as root,
# else with `unshare -r --root` (an unprivileged user namespace); if neither is possible it
# fails — in CI run it with sudo.
set -euo pipefail
cd "$(dirname "$0")/.."

bin=${1:-target/static/x86_64-unknown-linux-musl/release/api-monitor}
fake_api=${FAKE_API:-target/debug/fake-api}

say() { echo "static-check: $*"; }
fail() { echo "static-check: FAIL: $*" >&2; exit 1; }

[[ -x $bin ]] || fail "$bin does not exist (make static builds it)"
say "binary: $bin"

# --- 1. linkage -------------------------------------------------------------------------------
checked=0
if command -v readelf >/dev/null; then
  if readelf -lW "$bin" | grep 'program interpreter' >/dev/null; then
    fail "$bin requests a dynamic loader"
  fi
  if readelf -dW "$bin" | grep '(NEEDED)' >/dev/null; then
    fail "$bin needs shared libraries: $(readelf -dW "$bin" | grep '(NEEDED)' | tr -s ' ')"
  fi
  say "readelf: no program interpreter, no NEEDED libraries"
  checked=1
fi
if command -v file >/dev/null; then
  desc=$(file -b "$bin")
  say "file: $desc"
  [[ $desc == *"statically linked"* || $desc == *"static-pie linked"* ]] ||
    fail "file does not call $bin static"
  checked=1
fi
if command -v ldd >/dev/null; then
  desc=$(ldd "$bin" 2>&1 || true)
  say "ldd: $(echo "$desc" | tr -s ' \t\n' ' ')"
  [[ $desc == *"not a dynamic executable"* || $desc == *"statically linked"* ]] ||
    fail "ldd lists dynamic dependencies"
  checked=1
fi
((checked)) || say "no readelf, file or ldd here: linkage is proven by the empty-root runs only"

# --- fake-api on an ephemeral port ------------------------------------------------------------
if [[ ! -x $fake_api ]]; then
  say "building fake-api"
  cargo build -p fake-api --bin fake-api
fi
work=$(mktemp -d)
root=$(mktemp -d)
fake_pid='' run_pid=''
cleanup() {
  if [[ -n $run_pid ]]; then kill -KILL "$run_pid" 2>/dev/null || true; fi
  if [[ -n $fake_pid ]]; then kill "$fake_pid" 2>/dev/null || true; fi
  rm -rf "$work" "$root"
}
trap cleanup EXIT

"$fake_api" --bind 127.0.0.1 --port 0 >"$work/fake-api.out" 2>"$work/fake-api.err" &
fake_pid=$!
api=''
for _ in $(seq 1 100); do
  api=$(sed -n 's/^fake-api listening on //p' "$work/fake-api.out")
  [[ -n $api ]] && break
  kill -0 "$fake_pid" 2>/dev/null || break
  sleep 0.1
done
[[ -n $api ]] || { cat "$work/fake-api.err" >&2; fail "fake-api did not start"; }
say "fake-api at $api"
set_mode() { curl -fsS -X POST "$api/control/$1" >/dev/null || fail "cannot switch fake-api to $1"; }

# --- the empty root ---------------------------------------------------------------------------
chmod 0755 "$root"
cp "$bin" "$root/api-monitor"
chmod 0755 "$root/api-monitor"
# The one file besides the binary: a name for fake-api, as a container's /etc/hosts gives one.
mkdir -m 0755 "$root/etc"
echo "127.0.0.1 fake-api.static-check.test" >"$root/etc/hosts"
chmod 0644 "$root/etc/hosts"
named=${api/127.0.0.1/fake-api.static-check.test}
say "empty root $root holds: $(cd "$root" && find . -mindepth 1 | sort | tr '\n' ' ')"
if [[ $(id -u) == 0 ]]; then
  in_root=(chroot --userspec=65534:65534 "$root")
  how="chroot as uid 65534"
elif unshare -r --root="$root" /api-monitor --version >/dev/null 2>&1; then
  in_root=(unshare -r --root="$root")
  how="unshare -r --root (user namespace)"
else
  fail "cannot enter an empty root: run as root (sudo) or allow unprivileged user namespaces"
fi
say "entering it with $how"

# --- 2. check ---------------------------------------------------------------------------------
rc=0
out=$(timeout 20 "${in_root[@]}" /api-monitor check --url "$api/health" --timeout 2s 2>&1) || rc=$?
say "check (fake-api ok) exit=$rc: $out"
[[ $rc == 0 ]] || fail "check exited $rc against a healthy API"
grep -q '^OK ' <<<"$out" || fail "check printed no OK line"

rc=0
out=$(timeout 20 "${in_root[@]}" /api-monitor check --url "$named/health" --timeout 2s 2>&1) || rc=$?
say "check by host name ($named, /etc/hosts) exit=$rc: $out"
[[ $rc == 0 ]] || fail "check exited $rc against a healthy API named in /etc/hosts"
grep -q '^OK ' <<<"$out" || fail "check by host name printed no OK line"

set_mode down
rc=0
out=$(timeout 20 "${in_root[@]}" /api-monitor check --url "$api/health" --timeout 2s 2>&1) || rc=$?
say "check (fake-api down) exit=$rc: $out"
[[ $rc == 1 ]] || fail "check exited $rc against a down API (want 1)"
grep -q '^FAIL ' <<<"$out" || fail "check printed no FAIL line"
set_mode ok

# --- 3. run with SQLite, then SIGTERM --------------------------------------------------------
mkdir "$root/data"
if [[ $(id -u) == 0 ]]; then chown 65534:65534 "$root/data"; fi
rows() { # prints "healthy|reason" per row of state, oldest first
  local db="$root/data/x.db"
  [[ -s $db ]] || return 0
  if command -v sqlite3 >/dev/null; then
    sqlite3 "$db" "select healthy, ifnull(reason, '') from state order by id;" 2>/dev/null || true
  else
    python3 - "$db" <<'PY' 2>/dev/null || true
import sqlite3, sys
for h, r in sqlite3.connect(sys.argv[1]).execute(
        "select healthy, ifnull(reason, '') from state order by id"):
    print(f"{h}|{r}")
PY
  fi
}
wait_rows() { # wait_rows N: until the state table has N rows
  for _ in $(seq 1 100); do
    (($(rows | wc -l) >= $1)) && return 0
    kill -0 "$run_pid" 2>/dev/null || { cat "$work/run.log" >&2; fail "run exited early"; }
    sleep 0.1
  done
  cat "$work/run.log" >&2
  fail "no $1 row(s) in /data/x.db after 10s"
}

"${in_root[@]}" /api-monitor run --url "$api/health" --interval 200ms --timeout 1s \
  --failures 1 --successes 1 --db sqlite:///data/x.db >"$work/run.log" 2>&1 &
run_pid=$!
wait_rows 1
set_mode down
wait_rows 2
kill -TERM "$run_pid"
rc=0
wait "$run_pid" || rc=$?
run_pid=''
sed 's/^/  | /' "$work/run.log"
[[ $rc == 0 ]] || fail "run exited $rc after SIGTERM (want 0)"
grep -q 'OUTAGE' "$work/run.log" || fail "run logged no OUTAGE"
state=$(rows | tr '\n' ' ')
say "run: exit 0 after SIGTERM; state rows (healthy|reason): $state"
[[ $state == "1| 0|"* ]] || fail "want an up row, then a down row; got: $state"

size=$(stat -c %s "$bin")
say "OK: $bin runs alone in an empty root (check by IP and by name, run, SQLite, signals)"
say "size: $size bytes ($(awk -v b="$size" 'BEGIN { printf "%.1f MiB", b / 1048576 }'))"
