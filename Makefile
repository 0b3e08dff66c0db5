# api-monitor — the commands a new user needs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
# Where cargo puts what it builds.
TARGET_DIR := $(or $(CARGO_TARGET_DIR),target)
# `make run DB=URL` (or DB in the environment) passes `--db URL`. Unset, the binary chooses
# the database as documented: DATABASE_URL, DATABASE_URL_FILE, the --config/CONFIG file's `db`,
# else sqlite://api-monitor.db in this directory.
DB ?=
# The SQLite file of `make run`, for `make clean-db`: DB's when it is a sqlite:// URL.
RUN_DB_FILE = $(patsubst sqlite://%,%,$(or $(filter sqlite://%,$(DB)),sqlite://api-monitor.db))

.PHONY: help run demo test soak lint build fmt clean-db

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' \
	  '{ name[NR] = $$1; text[NR] = $$2; if (length($$1) > width) width = length($$1) } \
	   END { for (i = 1; i <= NR; i++) printf "  make %-" width "s  %s\n", name[i], text[i] }'

run: ## monitor the real API (settings from the environment, see README), SQLite by default
	@test -x $(TARGET_DIR)/release/api-monitor || \
	  echo "make run: building api-monitor (first time: a few minutes)…"
	$(CARGO) run --release -p api-monitor -- run$(if $(DB), --db "$(DB)")

demo: ## scripted outage against fake-api, emails printed by a local SMTP sink; stops by itself
	$(CARGO) build --workspace --bins
	@bash scripts/demo.sh

test: ## the test suite (unit, CLI, end-to-end with fake-api, SMTP, SQLite and MariaDB) + bench smoke run
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace
	$(MAKE) --no-print-directory bench-smoke

soak: ## the crash-consistency test for 10 minutes per database (SOAK_SECS=600): SIGKILLs at random, exactly-once checked
	$(CARGO) build --workspace --bins
	CRASH_SECS=$${SOAK_SECS:-600} $(CARGO) test -p api-monitor --test crash -- --nocapture

lint: ## formatting, clippy (warnings are errors), and no async runtime in the shipped binaries
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	@for pkg in api-monitor fake-api; do \
	  if $(CARGO) tree -e normal -p $$pkg | grep -Ei '\b(tokio|futures|async-std)\b'; then \
	    echo "lint: $$pkg must not depend on an async runtime" >&2; exit 1; fi; done
	@echo "lint: no async runtime in api-monitor or fake-api"

build: ## release binaries in target/release
	$(CARGO) build --release --workspace --bins

fmt: ## format the code
	$(CARGO) fmt --all

clean-db: ## delete the SQLite database of `make run` (api-monitor.db, or DB=sqlite://PATH's), -wal and -shm included
	rm -f "$(RUN_DB_FILE)" "$(RUN_DB_FILE)-wal" "$(RUN_DB_FILE)-shm" "$(RUN_DB_FILE)-journal"

# --- Deploy: container images, the docker compose stack, the static binary ---------------------
# `make up` needs Docker with the compose plugin; `make static` only cargo (and root, or
# unprivileged user namespaces, for its empty-root run).
COMPOSE ?= docker compose
IMAGE ?= api-monitor:local
FAKE_API_IMAGE ?= api-monitor-fake-api:local
MAIL_SINK_IMAGE ?= api-monitor-mail-sink:local
FAKE_API_URL ?= http://127.0.0.1:8000

.PHONY: image image-prebuilt image-test up down logs outage recover static lint-deploy

image: ## build the images: api-monitor (scratch, static musl), fake-api and mail-sink
	docker build -t $(IMAGE) .
	docker build --target fake-api -t $(FAKE_API_IMAGE) .
	docker build --target mail-sink -t $(MAIL_SINK_IMAGE) .

image-prebuilt: ## the same images' final stages from musl binaries built here (no registry, no BuildKit)
	bash scripts/image-prebuilt.sh $(IMAGE) $(FAKE_API_IMAGE) $(MAIL_SINK_IMAGE)

image-test: ## build the images and run them for real: one monitor, then a 3-member cluster (own dockerd; root, MariaDB)
	bash scripts/image-test.sh

up: ## start MySQL, Mailpit (UI :8025), fake-api (:8000) and api-monitor (:9898) in docker compose
	$(COMPOSE) up -d --build

down: ## stop the compose stack (the database volume is kept; `docker compose down -v` drops it)
	$(COMPOSE) down

logs: ## follow the compose stack's logs
	$(COMPOSE) logs -f

outage: ## switch the compose fake-api down: OUTAGE email after two probes
	curl -fsS -X POST $(FAKE_API_URL)/control/down

recover: ## switch the compose fake-api back to ok: RECOVERED email after two probes
	curl -fsS -X POST $(FAKE_API_URL)/control/ok

# The binary the image ships: x86_64-unknown-linux-musl, release (scripts/static-build.sh
# installs the Rust target and Debian's musl-tools when missing; without them it falls back to a
# static glibc build and says so loudly). An explicit --target puts the artifacts in their own
# target/static, which never waits on the lock of a build running in target/.
static: ## static musl build (the image's binary), proven alone in an empty root (scripts/static-check.sh)
	bash scripts/static-build.sh

lint-deploy: ## lint Dockerfile, compose file, workflow, .yamllint and scripts (tools from PyPI)
	bash scripts/lint-deploy.sh

# --- Benchmark (bench/): the release binaries on loopback against monit and blackbox_exporter ----
# `make bench` takes about 13 minutes and rewrites bench/RESULTS.md: CPU per probe, RSS, alert
# latency, shutdown, then 10,000 targets, the same with 1,000 black holes, and 1,000 hosts side
# by side with monit (installed with `apt-get install -y monit`; without it that step says so in
# the report). Knobs: `$(BENCH_DIR)/bench --help` (flags, or BENCH_* variables, e.g.
# `BENCH_PROBES=500 make bench`; `BENCH_STEPS=scale make bench` runs one step). `make
# bench-smoke` runs every step with tiny sizes on the debug binaries `make test` builds (about
# 40 s; the debug api-monitor also stands in for the image's binary, so that path runs too), writes
# to a temporary file and fails only when a measurement could not be taken, never on a timing.
# Both honour CARGO_TARGET_DIR.
BENCH_DIR := $(TARGET_DIR)/release
.PHONY: bench bench-smoke

# The image's binary (static, musl: what `make static` and the image build) is measured beside
# the dynamic one in the latency and monit steps when the musl target is installed.
MUSL_TARGET := x86_64-unknown-linux-musl
IMAGE_BIN := target/static/$(MUSL_TARGET)/release/api-monitor

bench: ## benchmark: CPU/probe, RSS, alert latency, shutdown, 10k targets, black holes, monit; writes bench/RESULTS.md
	$(CARGO) build --release --workspace --bins
	@if rustup target list --installed 2>/dev/null | grep -qx $(MUSL_TARGET) && command -v musl-gcc >/dev/null; then \
	  $(CARGO) build --release --target $(MUSL_TARGET) --target-dir target/static \
	    -p api-monitor -p fake-api --bin api-monitor --bin fake-api --bin mail-sink && \
	  $(BENCH_DIR)/bench --image-bin $(IMAGE_BIN) --out bench/RESULTS.md; \
	else \
	  echo "bench: no musl target or musl-gcc (make static installs them): the image's binary is not measured"; \
	  $(BENCH_DIR)/bench --out bench/RESULTS.md; \
	fi

bench-smoke: ## the benchmark with tiny sizes, so it cannot rot (no timing is asserted)
	$(CARGO) build --workspace --bins
	@out=$$(mktemp "$${TMPDIR:-/tmp}/api-monitor-bench-smoke.XXXXXX.md") && \
	  $(TARGET_DIR)/debug/bench --smoke --image-bin $(TARGET_DIR)/debug/api-monitor --out "$$out" >/dev/null && \
	  echo "bench-smoke: every measurement taken; report in $$out"
