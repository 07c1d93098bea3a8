#!/usr/bin/env bash
# Install everything the tests need on a fresh Debian machine, then lint, type-check and test.
# Usage: bash tests/run.sh [pytest arguments]  (without arguments: the whole suite, in two halves at once)
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
# the project's modules compiled once: each of the few hundred services and commands the tests start imports them,
# and where PYTHONDONTWRITEBYTECODE is set (as on CI's machine) each would compile them again (about 0.6 s of CPU)
.venv/bin/python -m compileall -q -j 2 bot console handlers nlp storage >/dev/null
.venv/bin/ruff check .
# mypy (product, tests and benchmarks) and the import contracts (rooms without cycles: pyproject.toml, drawn in
# docs/architecture.md) keep a CPU busy for half a minute while the tests mostly wait for the services they start:
# they run alongside, and either failing fails the run
checks_log="$(mktemp)"
(nice -n 10 .venv/bin/mypy && nice -n 10 .venv/bin/lint-imports) >"$checks_log" 2>&1 &
checks=$!
status=0
if [ "$#" -gt 0 ]; then
    .venv/bin/python -m pytest -q "$@" || status=$?
else
    # The whole suite in two halves at once: most tests wait on the services, databases and browser they start,
    # so one pytest process leaves the machine's second CPU idle (about 20 minutes in one process). Each half
    # has its own temporary directories, test databases (random names) and default model; the first half's
    # report follows the second's.
    # The second half is everything the first does not take, so a new test directory is never left out.
    # (balanced by time, not by count: tests/standins and tests/nlp moved to the second half on 7 Dec 2026, when
    # tests/console got 40 % faster; the halves took 17.3 and 14.9 min before, under load. tests/standins moved
    # back later that day, when the halves took 19.0 and 20.9 min on an idle 2-CPU machine. Four processes instead
    # of two were slower there: the CPUs are saturated, and more services at once only wait longer.)
    first_half=(tests/bot tests/channels tests/faults tests/standins)
    first_log="$(mktemp)"
    .venv/bin/python -m pytest -q "${first_half[@]}" >"$first_log" 2>&1 &
    first=$!
    .venv/bin/python -m pytest -q tests "${first_half[@]/#/--ignore=}" || status=$?
    if ! wait "$first"; then
        status=1
    fi
    cat "$first_log"
    rm -f "$first_log"
fi
if ! wait "$checks"; then
    status=1
fi
cat "$checks_log"
rm -f "$checks_log"
exit "$status"
