# api-monitor — the commands a new user needs. `make help` lists them.
SHELL := /bin/bash
CARGO ?= cargo
# Where `make run` / `make demo` keep their SQLite database.
DB ?= sqlite://api-monitor.db

.PHONY: help run demo test lint build fmt clean-db

help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-8s %s\n", $$1, $$2}'

run: ## monitor the real API (settings from the environment, see README), SQLite by default
	$(CARGO) run --release -p api-monitor -- run --db "$${DATABASE_URL:-$(DB)}"

demo: ## scripted outage against fake-api, emails printed by a local SMTP sink; stops by itself
	$(CARGO) build --workspace --bins
	@bash scripts/demo.sh

test: ## the test suite (unit, CLI, end-to-end with fake-api, SMTP, SQLite and MariaDB)
	$(CARGO) build --workspace --bins
	$(CARGO) test --workspace

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
