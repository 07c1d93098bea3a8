#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then lint, type-check and test.
# Usage: bash tests/run.sh [pytest arguments]  (without arguments: the whole suite, in four processes at once)
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
    # The whole suite in four processes at once: most tests wait on the services, databases and browser they
    # start (one process leaves the CPUs idle more than half the time), so two CPUs are kept busy by four. Each
    # process has its own temporary directories, test databases (random names) and default model; the reports
    # follow in order. The last process takes everything the groups do not, so a new test directory is never left
    # out. (Two halves took 19 and 21 minutes on the 2-CPU machine of 7 Dec 2026, over CI's 20 with the install.)
    groups=("tests/bot" "tests/channels tests/faults" "tests/console")
    pids=()
    logs=()
    ignored=()
    for group in "${groups[@]}"; do
        log="$(mktemp)"
        logs+=("$log")
        # shellcheck disable=SC2086  # a group is a list of directories
        .venv/bin/python -m pytest -q $group >"$log" 2>&1 &
        pids+=("$!")
        for directory in $group; do
            ignored+=("--ignore=$directory")
        done
    done
    .venv/bin/python -m pytest -q tests "${ignored[@]}" || status=$?
    for index in "${!pids[@]}"; do
        if ! wait "${pids[$index]}"; then
            status=1
        fi
        cat "${logs[$index]}"
        rm -f "${logs[$index]}"
    done
fi
if ! wait "$checks"; then
    status=1
fi
cat "$checks_log"
rm -f "$checks_log"
exit "$status"
