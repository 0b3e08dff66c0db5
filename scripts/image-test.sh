#!/usr/bin/env bash
# `make image-test`: the images built and run for real, as `.ci/run` does on every change.
#
#   1. an engine: Debian's dockerd, started here with its own socket, data and exec roots under
#      a temporary directory (installs `docker.io` and `tini` from Debian when missing); stopped
#      and cleaned up however this script ends;
#   2. the three images — api-monitor, fake-api, mail-sink — from the Dockerfile's final stages
#      and the musl binaries `make static` built (scripts/image-prebuilt.sh), each ≤ 8 MB;
#   3. one monitor on a user-defined network, SQLite on a named volume: it runs as uid 65534,
#      resolves its target by container name, answers /healthz and /metrics on its published
#      port, reports healthy through `check --healthz` (the image's HEALTHCHECK) during the
#      outage it mails, mails one OUTAGE and one RECOVERED to mail-sink with a `docker restart`
#      in between and no second email, and `docker stop` ends it with exit 0 within 2 s;
#   4. the compose file with Compose v2 (scripts/compose-v2.sh): its fake-api and api-monitor
#      services as written, MariaDB and mail-sink standing in for the images that cannot be
#      pulled: `make outage` and `make recover` each arrive as one email;
#   5. a cluster of three monitors sharing the host's MariaDB (reached through the network's
#      gateway): `docker kill` the leader mid-outage, `docker pause`/`unpause` another: exactly
#      one OUTAGE and one RECOVERED email.
#
# It fails loudly — never skips — when it cannot do any of this. Needs root (dockerd), curl,
# and MariaDB on 127.0.0.1:3306 as root without a password (IMAGE_TEST_MYSQL_PORT to change).
set -euo pipefail
cd "$(dirname "$0")/.."

image=${IMAGE:-api-monitor:local}
fake_image=${FAKE_API_IMAGE:-api-monitor-fake-api:local}
sink_image=${MAIL_SINK_IMAGE:-api-monitor-mail-sink:local}
mysql_port=${IMAGE_TEST_MYSQL_PORT:-3306}
# The databases of the cluster and of the compose stack; dropped and made again at each run.
cluster_db=api_monitor_image_test
compose_db=api_monitor_image_test_compose
# Every image must stay within this (the issue's "≤ 8 MB").
max_image_bytes=8000000

say() { echo "image-test: $*"; }
step() { printf '\nimage-test: ---- %s\n' "$*"; }
fail() {
  echo "image-test: FAIL: $*" >&2
  if [[ -S ${sock:-} ]]; then
    for c in $(d ps -aq 2>/dev/null | head -8); do
      echo "image-test: ---- last log of $(d inspect -f '{{.Name}}' "$c"):" >&2
      d logs --tail 40 "$c" >&2 2>&1 || true
      d inspect -f '{{if .State.Health}}health: {{json .State.Health}}{{end}}' "$c" >&2 || true
    done
  fi
  [[ -f ${work:-}/dockerd.log ]] && { echo "image-test: ---- dockerd log:" >&2; tail -20 "$work/dockerd.log" >&2; }
  exit 1
}

# wait_for SECONDS WHAT COMMAND...: retry COMMAND every half second until it succeeds.
wait_for() {
  local limit=$1 what=$2
  shift 2
  local deadline=$((SECONDS + limit))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || fail "$what: not within ${limit}s"
    sleep 0.5
  done
}

# ---- 1. the engine ---------------------------------------------------------------------------
step "engine"
[[ $(id -u) == 0 ]] || fail "needs root, to run dockerd"
missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
[[ -x /usr/bin/tini-static ]] || missing+=(tini)
command -v socat >/dev/null || missing+=(socat)
command -v curl >/dev/null || missing+=(curl)
if ((${#missing[@]})); then
  say "installing ${missing[*]} from Debian"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null ||
    fail "cannot install ${missing[*]} (apt-get install)"
fi
command -v docker >/dev/null || fail "no docker client on PATH"

work=$(mktemp -d /tmp/api-monitor-image-test.XXXXXX)
sock=$work/docker.sock
d() { docker -H "unix://$sock" "$@"; }

cleanup() {
  local rc=$?
  set +e
  if [[ -S $sock ]]; then
    local all
    mapfile -t all < <(d ps -aq 2>/dev/null)
    ((${#all[@]})) && d rm -f "${all[@]}" >/dev/null 2>&1
  fi
  for pid in "${forwarders[@]}"; do kill "$pid" 2>/dev/null; done
  if [[ -f $work/dockerd.pid ]]; then
    local pid
    pid=$(cat "$work/dockerd.pid")
    kill "$pid" 2>/dev/null
    for _ in $(seq 1 60); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
    kill -9 "$pid" 2>/dev/null
  fi
  # dockerd leaves an nsfs mount (and, if killed, overlay or shm mounts) under its roots.
  awk -v w="$work" 'index($2, w) == 1 { print $2 }' /proc/mounts | sort -r |
    while read -r m; do umount -l "$m"; done
  for db in "$cluster_db" "$compose_db"; do mysql_exec "DROP DATABASE IF EXISTS $db" >/dev/null 2>&1; done
  rm -rf "$work"
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

mysql_exec() { mysql --protocol=tcp -h 127.0.0.1 -P "$mysql_port" -u root -e "$1"; }
# forward_mysql ADDRESS: MariaDB listens on loopback only; a forwarder on a network's gateway
# address lets the containers reach it.
forwarders=()
forward_mysql() {
  socat "TCP-LISTEN:$mysql_port,bind=$1,reuseaddr,fork" "TCP:127.0.0.1:$mysql_port" &
  forwarders+=($!)
}
# fresh_db NAME: an empty database NAME on the host's MariaDB.
fresh_db() {
  mysql_exec "DROP DATABASE IF EXISTS $1; CREATE DATABASE $1" ||
    fail "MariaDB on 127.0.0.1:$mysql_port (root, no password) cannot be used"
}

say "starting dockerd (vfs storage, no iptables) under $work"
dockerd --storage-driver=vfs --iptables=false --ip6tables=false --bridge=none \
  --exec-opt native.cgroupdriver=cgroupfs --init-path /usr/bin/tini-static \
  --data-root "$work/data" --exec-root "$work/exec" --pidfile "$work/dockerd.pid" \
  --host "unix://$sock" >"$work/dockerd.log" 2>&1 &
wait_for 60 "dockerd answering on $sock" d version
say "engine $(d version -f '{{.Server.Version}}') up"

# ---- 2. the images ---------------------------------------------------------------------------
step "images"
DOCKER="docker -H unix://$sock" bash scripts/image-prebuilt.sh "$image" "$fake_image" "$sink_image"
for i in "$image" "$fake_image" "$sink_image"; do
  size=$(d image inspect -f '{{.Size}}' "$i")
  ((size <= max_image_bytes)) || fail "$i is $size bytes, more than $max_image_bytes"
  user=$(d image inspect -f '{{.Config.User}}' "$i")
  [[ $user == 65534:65534 ]] || fail "$i runs as '$user', not 65534:65534"
done
say "each image ≤ $max_image_bytes bytes and set to run as 65534:65534"

# ---- 3. one monitor --------------------------------------------------------------------------
step "one monitor: SQLite on a volume, a target by name, mail to mail-sink"
net="api-monitor-test"
d network create "$net" >/dev/null
gateway=$(d network inspect -f '{{(index .IPAM.Config 0).Gateway}}' "$net")
[[ -n $gateway ]] || fail "no gateway address for network $net"

target=http://fake-api:8000/health
outage_subject="Subject: [api-monitor] OUTAGE: $target is down"
recovered_subject="Subject: [api-monitor] RECOVERED: $target is up"
# mails SUBJECT: how many messages mail-sink printed with a subject starting with SUBJECT.
mails() { d logs mail-sink 2>/dev/null | grep -cF "$1" || true; }
mails_are() { [[ $(mails "$1") == "$2" ]]; }
# count CONTAINER TEXT: lines of CONTAINER's log (all its runs) containing TEXT.
count() { d logs "$1" 2>&1 | grep -cF "$2" || true; }
at_least() { (($(count "$1" "$2") >= $3)); }
host_port() { d port "$1" "$2" | head -1 | sed 's/.*://'; }

d run -d --init --name fake-api --network "$net" -p 127.0.0.1::8000 "$fake_image" >/dev/null
d run -d --init --name mail-sink --network "$net" "$sink_image" >/dev/null
api=http://127.0.0.1:$(host_port fake-api 8000)
wait_for 30 "fake-api answering on $api" curl -fsS "$api/health"
set_mode() { curl -fsS -X POST "$api/control/$1" >/dev/null || fail "cannot set fake-api to $1"; }

monitor_env=(-e "API_URL=$target" -e SMTP_URL=smtp://mail-sink:2525 -e SUPPORT=oncall@example.com
  -e MAIL_FROM=api-monitor@example.com -e INTERVAL=1s)
d run -d --name api-monitor --network "$net" -p 127.0.0.1::9898 -v api-monitor-data:/data \
  --health-interval 2s --health-start-period 5s "${monitor_env[@]}" "$image" >/dev/null
monitor=http://127.0.0.1:$(host_port api-monitor 9898)

wait_for 30 "api-monitor probing $target (resolved by container name) and finding it UP" \
  at_least api-monitor "UP target=$target" 1
pid=$(d inspect -f '{{.State.Pid}}' api-monitor)
uid=$(awk '/^Uid:/ { print $2 }' "/proc/$pid/status")
[[ $uid == 65534 ]] || fail "api-monitor runs as uid $uid, not 65534"
say "api-monitor (pid $pid on the host) runs as uid $uid; $target resolved by name"

wait_for 30 "/healthz on the published port $monitor" curl -fsS "$monitor/healthz"
[[ $(curl -fsS "$monitor/healthz") == ok ]] || fail "/healthz did not say ok"
curl -fsS "$monitor/metrics" | grep -q "^api_monitor_probes_total{" ||
  fail "/metrics has no api_monitor_probes_total"
health() { d inspect -f '{{.State.Health.Status}}' "$1"; }
is_healthy() { [[ $(health "$1") == healthy ]]; }
wait_for 60 "the HEALTHCHECK (check --healthz) to report healthy" is_healthy api-monitor
say "/healthz, /metrics and the health check answer"

set_mode down
wait_for 60 "the OUTAGE email at mail-sink" mails_are "$outage_subject" 1
say "OUTAGE mailed"
# A health check run after the email: healthy, though the API it watches is down.
before=$(d inspect -f '{{range .State.Health.Log}}{{.Start}} {{end}}' api-monitor)
newest_after_outage() {
  local starts
  starts=$(d inspect -f '{{range .State.Health.Log}}{{.Start}} {{end}}' api-monitor)
  [[ $starts != "$before" ]]
}
wait_for 30 "a health check after the outage began" newest_after_outage
last=$(d inspect -f '{{range .State.Health.Log}}{{.ExitCode}}:{{.Output}}|{{end}}' api-monitor)
last=${last%|}; last=${last##*|}
[[ $last == 0:OK* ]] || fail "the health check during the outage said: $last"
is_healthy api-monitor || fail "api-monitor not healthy during the API's outage"
say "during the outage the health check says: ${last#0:}"

# docker restart in mid-outage: the state is on the volume; no second OUTAGE.
failed_before=$(count api-monitor "probe failed target=$target")
d restart -t 10 api-monitor >/dev/null
wait_for 60 "three failed probes after the restart" \
  at_least api-monitor "probe failed target=$target" $((failed_before + 3))
mails_are "$outage_subject" 1 || fail "a second OUTAGE email after docker restart"
say "docker restart in mid-outage: probing again, still one OUTAGE email"
monitor=http://127.0.0.1:$(host_port api-monitor 9898)

set_mode ok
wait_for 60 "the RECOVERED email at mail-sink" mails_are "$recovered_subject" 1
say "RECOVERED mailed"

start=$(date +%s%N)
d stop -t 10 api-monitor >/dev/null
took_ms=$((($(date +%s%N) - start) / 1000000))
code=$(d inspect -f '{{.State.ExitCode}}' api-monitor)
[[ $code == 0 ]] || fail "docker stop: exit code $code, not 0"
((took_ms <= 2000)) || fail "docker stop took ${took_ms} ms, more than 2 s"
say "docker stop: exit 0 in ${took_ms} ms"
if ! mails_are "$outage_subject" 1 || ! mails_are "$recovered_subject" 1; then
  fail "not exactly one OUTAGE and one RECOVERED email"
fi

# One-shot commands in the image: `check` by container name; `check --healthz` with no monitor.
out=$(d run --rm --network "$net" "$image" check --url "$target") ||
  fail "check --url $target in a container: $out"
[[ $out == "OK     $target from direct"* ]] || fail "check printed: $out"
say "docker run … check: $out"
if out=$(d run --rm --network "$net" "$image" check --healthz); then
  fail "check --healthz with no monitor running said healthy: $out"
fi
say "docker run … check --healthz with no monitor there: $out"
d rm -f api-monitor >/dev/null

# ---- 4. the compose file ---------------------------------------------------------------------
step "docker-compose.yml with Compose v2: its fake-api and api-monitor services as written"
# No image can be pulled here: `db` (mysql) is left out and the host's MariaDB stands in for it,
# `mail` (Mailpit) is mail-sink on Mailpit's SMTP port. Everything else is the file's own:
# images, published ports, init, environment, restart policy.
compose=$(bash scripts/compose-v2.sh) || fail "no Compose v2 (scripts/compose-v2.sh)"
fresh_db "$compose_db"
override=$work/compose.override.yml
dc() { DOCKER_HOST=unix://$sock "$compose" -p api-monitor -f docker-compose.yml -f "$override" "$@"; }
printf '%s\n' "services:" "  mail:" "    image: $sink_image" "    init: true" \
  '    entrypoint: ["/mail-sink", "--bind", "0.0.0.0", "--port", "1025"]' >"$override"
dc up -d --no-build --no-deps mail fake-api >/dev/null 2>&1 || fail "compose up mail fake-api"
compose_gateway=$(d network inspect -f '{{(index .IPAM.Config 0).Gateway}}' api-monitor_default)
forward_mysql "$compose_gateway"
printf '%s\n' "  api-monitor:" "    environment:" \
  "      DATABASE_URL: mysql://root@$compose_gateway:$mysql_port/$compose_db" \
  "      INTERVAL: 1s" >>"$override"
dc up -d --no-build --no-deps api-monitor >/dev/null 2>&1 || fail "compose up api-monitor"
compose_mails() { dc logs --no-log-prefix mail 2>/dev/null | grep -cF "$1" || true; }
compose_mails_are() { [[ $(compose_mails "$1") == "$2" ]]; }
wait_for 60 "the compose stack's monitor on http://127.0.0.1:9898/healthz" \
  curl -fsS http://127.0.0.1:9898/healthz
wait_for 30 "fake-api on http://127.0.0.1:8000" curl -fsS http://127.0.0.1:8000/health
state_rows() {
  mysql --protocol=tcp -h 127.0.0.1 -P "$mysql_port" -u root -N -B \
    -e "SELECT GROUP_CONCAT(IF(healthy, 'up', 'down') ORDER BY id) FROM $compose_db.state"
}
first_row_is_up() { [[ $(state_rows 2>/dev/null) == up ]]; }
wait_for 30 "the first state row (up)" first_row_is_up
make --no-print-directory -s outage >/dev/null || fail "make outage"
wait_for 60 "make outage: the OUTAGE email" compose_mails_are "$outage_subject" 1
make --no-print-directory -s recover >/dev/null || fail "make recover"
wait_for 60 "make recover: the RECOVERED email" compose_mails_are "$recovered_subject" 1
rows=$(state_rows)
[[ $rows == up,down,up ]] || fail "the compose stack's state rows are '$rows', not up,down,up"
dc down --volumes >/dev/null 2>&1 || fail "compose down"
say "make outage / make recover: one OUTAGE, one RECOVERED; state rows $rows"

# ---- 5. the cluster --------------------------------------------------------------------------
step "cluster: three monitors on the host's MariaDB; kill the leader, pause another"
fresh_db "$cluster_db"
forward_mysql "$gateway"
d rm -f mail-sink >/dev/null
d run -d --init --name mail-sink --network "$net" "$sink_image" >/dev/null
set_mode ok

lease=3s
members=(member-1 member-2 member-3)
for m in "${members[@]}"; do
  d run -d --name "$m" --network "$net" -p 127.0.0.1::9898 "${monitor_env[@]}" \
    -e "DATABASE_URL=mysql://root@$gateway:$mysql_port/$cluster_db" \
    -e CLUSTER=image-test -e LEASE=$lease "$image" >/dev/null
done
# leader: the member whose /metrics says it leads (none while a takeover is pending).
leader() {
  local m
  for m in "$@"; do
    if curl -fsS "http://127.0.0.1:$(host_port "$m" 9898)/metrics" 2>/dev/null |
      grep -q '^api_monitor_cluster_leader 1$'; then
      echo "$m"
      return 0
    fi
  done
  return 1
}
wait_for 60 "a leader among ${members[*]}" leader "${members[@]}"
# all_see N MEMBER...: each MEMBER's /metrics counts N live members.
all_see() {
  local n=$1 m
  shift
  for m in "$@"; do
    curl -fsS "http://127.0.0.1:$(host_port "$m" 9898)/metrics" |
      grep -q "^api_monitor_cluster_members $n\$" || return 1
  done
}
wait_for 60 "every member to count three" all_see 3 "${members[@]}"
first=$(leader "${members[@]}")
say "leader: $first"

set_mode down
wait_for 60 "the cluster's OUTAGE email" mails_are "$outage_subject" 1
d kill "$first" >/dev/null
survivors=()
for m in "${members[@]}"; do [[ $m != "$first" ]] && survivors+=("$m"); done
paused=${survivors[0]}
d pause "$paused" >/dev/null
say "killed the leader $first, paused $paused for 8 s"
sleep 8
d unpause "$paused" >/dev/null
wait_for 60 "a new leader among ${survivors[*]}" leader "${survivors[@]}"
say "new leader: $(leader "${survivors[@]}")"
set_mode ok
wait_for 90 "the cluster's RECOVERED email" mails_are "$recovered_subject" 1
# Two leases more, for a copy that would come late.
sleep 6
outages=$(mails "$outage_subject")
recoveries=$(mails "$recovered_subject")
lost=$(mails "Subject: [api-monitor] MEMBER LOST")
[[ $outages == 1 && $recoveries == 1 ]] ||
  fail "cluster: $outages OUTAGE and $recoveries RECOVERED emails, not one each"
say "cluster: one OUTAGE, one RECOVERED ($lost MEMBER LOST)"
for m in "${survivors[@]}"; do
  start=$(date +%s%N)
  d stop -t 10 "$m" >/dev/null
  took_ms=$((($(date +%s%N) - start) / 1000000))
  code=$(d inspect -f '{{.State.ExitCode}}' "$m")
  [[ $code == 0 ]] || fail "docker stop $m: exit code $code"
  say "docker stop $m: exit 0 in ${took_ms} ms"
done

step "ok"
