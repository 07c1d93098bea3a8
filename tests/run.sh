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
.venv/bin/mypy                # product, tests and benchmarks
.venv/bin/lint-imports        # rooms without cycles (contracts in pyproject.toml, drawn in docs/architecture.md)
exec .venv/bin/python -m pytest -q "$@"
