#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then lint, type-check and test.
# Usage: bash tests/run.sh [pytest arguments]  (without arguments: the whole suite, in three parts at once)
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
if [ "$#" -gt 0 ]; then
    .venv/bin/python -m pytest -q "$@" || status=$?
else
    # The whole suite in three parts at once: most tests wait on the services, databases and browser they start,
    # so one pytest process leaves the machine's CPUs mostly idle (about 30 minutes in one process; two parts
    # used 1.4 of 2 CPUs). Each part has its own temporary directories, test databases (random names) and
    # default model; the other parts' reports follow the last one's.
    # The last part is everything the others do not take, so a new test directory is never left out.
    first_part=(tests/channels tests/faults tests/standins)
    second_part=(tests/bot tests/nlp tests/handlers)
    first_log="$(mktemp)"
    second_log="$(mktemp)"
    .venv/bin/python -m pytest -q "${first_part[@]}" >"$first_log" 2>&1 &
    first=$!
    .venv/bin/python -m pytest -q "${second_part[@]}" >"$second_log" 2>&1 &
    second=$!
    .venv/bin/python -m pytest -q tests "${first_part[@]/#/--ignore=}" "${second_part[@]/#/--ignore=}" || status=$?
    for part in "$first" "$second"; do
        if ! wait "$part"; then
            status=1
        fi
    done
    cat "$first_log" "$second_log"
    rm -f "$first_log" "$second_log"
fi
if ! wait "$checks"; then
    status=1
fi
cat "$checks_log"
rm -f "$checks_log"
exit "$status"
