#!/usr/bin/env bash
# Regenerate the lock files from pyproject.toml: every dependency pinned with its hashes.
#   deploy/requirements.lock      what the service runs with (README's first command, the container image)
#   deploy/requirements-dev.lock  plus the test and benchmark extras (tests/run.sh, .ci/run)
# Run after changing a dependency in pyproject.toml; commit the two files with that change.
set -euo pipefail
cd "$(dirname "$0")/.."
tools=$(mktemp -d)
trap 'rm -rf "$tools"' EXIT
python3 -m venv "$tools/venv"
"$tools/venv/bin/pip" install -q pip-tools
compile() {
    "$tools/venv/bin/pip-compile" -q --generate-hashes --allow-unsafe --strip-extras --no-emit-index-url \
        --no-emit-find-links --no-emit-trusted-host --resolver=backtracking "$@" pyproject.toml
}
compile -o deploy/requirements.lock
compile --extra test --extra bench -o deploy/requirements-dev.lock
