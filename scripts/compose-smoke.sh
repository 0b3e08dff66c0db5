#!/usr/bin/env bash
# The docker compose stack end to end, as CI's image job runs it: api-monitor watches fake-api;
# an outage and then a recovery each reach Mailpit as an email; MySQL holds the up, down, up
# rows; `api-monitor check` works inside the running container. Builds the images if they are
# missing, and removes the stack and its volume when done.
#
#   scripts/compose-smoke.sh          (Docker with the compose plugin; ports 8000 and 8025 free)
set -euo pipefail
cd "$(dirname "$0")/.."

compose=(docker compose)
api=http://127.0.0.1:8000
mailpit=http://127.0.0.1:8025

say() { echo "compose-smoke: $*"; }
fail() {
  echo "compose-smoke: FAIL: $*" >&2
  "${compose[@]}" ps -a >&2 || true
  "${compose[@]}" logs --no-color --tail=60 >&2 || true
  exit 1
}
cleanup() { "${compose[@]}" down --volumes --remove-orphans >/dev/null 2>&1 || true; }
trap cleanup EXIT

# wait_for SECONDS WHAT COMMAND...: retry COMMAND every 2s until it succeeds.
wait_for() {
  local limit=$1 what=$2
  local deadline=$((SECONDS + limit))
  shift 2
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out after ${limit}s waiting for $what"
    sleep 2
  done
  say "$what: yes"
}
# (grep without -q: under pipefail an early exit would fail the writer with SIGPIPE.)
monitor_logged() { "${compose[@]}" logs --no-color api-monitor 2>&1 | grep -F "$1" >/dev/null; }
mail_arrived() { curl -fsS "$mailpit/api/v1/messages" | grep -F "$1" >/dev/null; }

say "starting the stack"
"${compose[@]}" up -d --wait --wait-timeout 240 || fail "the stack did not come up"

# INTERVAL is 5s and both thresholds 2: each transition takes 5-10s to be confirmed.
wait_for 60 "api-monitor recorded the API up" monitor_logged "UP target=http://fake-api:8000/health"
curl -fsS -X POST "$api/control/down" >/dev/null || fail "cannot switch fake-api down"
wait_for 60 "OUTAGE email in Mailpit" mail_arrived "] OUTAGE: http://fake-api:8000/health"
curl -fsS -X POST "$api/control/ok" >/dev/null || fail "cannot switch fake-api back to ok"
wait_for 60 "RECOVERED email in Mailpit" mail_arrived "] RECOVERED: http://fake-api:8000/health"

# shellcheck disable=SC2016 # expanded by the container's shell, from its own environment
rows=$("${compose[@]}" exec -T db sh -c \
  'mysql -N -u"$MYSQL_USER" -p"$MYSQL_PASSWORD" monitor -e "select healthy from state order by id"' \
  2>/dev/null | tr '\n' ' ')
say "state.healthy in MySQL, oldest first: $rows"
[[ $rows == "1 0 1 " ]] || fail "want the rows up, down, up"

out=$("${compose[@]}" exec -T api-monitor /api-monitor check) || fail "check failed: $out"
say "check inside the container: $out"

say "image sizes: $(docker image ls --format '{{.Repository}}:{{.Tag}}={{.Size}}' |
  grep -E '^api-monitor(-fake-api)?:local=' | tr '\n' ' ')"
say "ok"
