#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then lint, type-check and test.
# Usage: bash tests/run.sh [pytest arguments]
set -euo pipefail
cd "$(dirname "$0")/.."

if ! command -v chromium >/dev/null 2>&1; then
    if [ "$(id -u)" = 0 ]; then
        apt-get update -qq && apt-get install -y -qq chromium fonts-noto-cjk >/dev/null
    else
        echo "Chromium is needed for the browser tests: sudo apt-get install chromium fonts-noto-cjk" >&2
        exit 1
    fi
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
# the dependencies exactly as locked (with hashes; deploy/lock.sh regenerates), then the package itself
.venv/bin/pip install -q --require-hashes -r deploy/requirements-dev.lock
.venv/bin/pip install -q --no-deps -e .
.venv/bin/ruff check .
# mypy (product, tests and benchmarks) and the import contracts (rooms without cycles: pyproject.toml, drawn in
# docs/architecture.md) keep a CPU busy for half a minute while the tests mostly wait for the services they start:
# they run alongside, and either failing fails the run
checks_log="$(mktemp)"
(.venv/bin/mypy && .venv/bin/lint-imports) >"$checks_log" 2>&1 &
checks=$!
status=0
.venv/bin/python -m pytest -q "$@" || status=$?
if ! wait "$checks"; then
    status=1
fi
cat "$checks_log"
rm -f "$checks_log"
exit "$status"
