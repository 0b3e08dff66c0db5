#!/usr/bin/env bash
# `make demo`: the whole outage/recovery cycle on this machine, with nothing but cargo.
# fake-api plays a scripted outage (ok 4s, down 8s, ok), api-monitor watches it every second
# with SQLite, and mail-sink (a tiny SMTP server) prints the two emails as they arrive, between
# the monitor's log lines; then it all stops.
set -euo pipefail
cd "$(dirname "$0")/.."
bin=${CARGO_TARGET_DIR:-target}/debug
work=$(mktemp -d)
pids=()
cleanup() { for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"; }
trap cleanup EXIT

# Start a helper in the background; its first stdout line is "<name> listening on <url>".
start() {
  "$bin/$1" "${@:2}" >"$work/$1.out" 2>"$work/$1.err" &
  pids+=($!)
}

# Print the url a started helper announced.
url_of() {
  local out="$work/$1.out"
  for _ in $(seq 1 100); do
    if [[ -s "$out" ]]; then head -n1 "$out" | sed 's/.* listening on //'; return; fi
    sleep 0.1
  done
  echo "demo: $1 did not start" >&2; cat "$work/$1.err" >&2; exit 1
}

start fake-api --port 0 --script "ok:4s,down:8s,ok"
start mail-sink --port 0 --count 2
sink=${pids[1]}
api=$(url_of fake-api)
smtp=$(url_of mail-sink)
echo "demo: fake-api at $api (ok 4s, then down 8s, then ok); SMTP sink at $smtp"
echo "demo: api-monitor log follows; each of the two emails is printed as it arrives"
echo

"$bin/api-monitor" --url "$api/health" --interval 1s --timeout 2s \
  --db "sqlite://$work/demo.db" --smtp "$smtp" --support oncall@example.com \
  --from api-monitor@demo.local &
monitor=$!
pids+=("$monitor")

# Print what the sink wrote since last time: its complete lines after the "listening" one. It
# writes each email in one piece, so an email appears whole, as soon as it has arrived.
shown=1
show_mail() {
  local lines
  lines=$(wc -l <"$work/mail-sink.out")
  if ((lines > shown)); then
    sed -n "$((shown + 1)),${lines}p" "$work/mail-sink.out"
    shown=$lines
  fi
}

# The sink exits after the outage and the recovery email.
for _ in $(seq 1 600); do
  show_mail
  kill -0 "$sink" 2>/dev/null || break
  sleep 0.1
done
show_mail
kill -TERM "$monitor"; wait "$monitor" || true
echo
if command -v sqlite3 >/dev/null; then
  echo "===== select * from state; ====="
  sqlite3 -header -column "$work/demo.db" 'select * from state;'
fi
echo "demo: done"
