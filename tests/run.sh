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
    # The whole suite in three parts at once: most tests wait on the services, databases and browser they start,
    # so one pytest process leaves the machine's CPUs idle much of the time (about 25 minutes in one process).
    # Each part has its own temporary directories, test databases (random names) and default model; the reports
    # of the first two follow the last's. The last part is everything the others do not take, so a new test
    # directory is never left out.
    # Balanced by time on a 2-CPU machine (7 Dec 2026, idle): the fault tests (kills, restarts, outages: mostly
    # waiting) with the channels' end-to-end tests; the shell's tests with storage's and the classifier's; the
    # console's and the dialog's. Two halves took 14.6 and 12.2 min there, these three 11.9, 11.4 and 13.3.
    # (On a slower 2-CPU machine, whose CPUs two halves already kept busy, four parts were slower than two: where
    # the CPUs are saturated, more services at once only wait longer.) On such a machine (AMD EPYC, 7 Dec 2026) these
    # three parts took 25.6, 21.8 and 25.0 min, 44 CPU-minutes in all; a py-spy profile found a quarter of the
    # first part's CPU in TLS contexts made per request and the dialog tests migrating a new database each; without
    # them 19.4, 18.1 and 20.8 min (35 CPU-minutes).
    parts=("tests/faults tests/standins tests/channels" "tests/bot tests/storage tests/nlp")
    logs=()
    pids=()
    ignored=()
    for part in "${parts[@]}"; do
        read -r -a directories <<<"$part"
        log="$(mktemp)"
        .venv/bin/python -m pytest -q "${directories[@]}" >"$log" 2>&1 &
        pids+=("$!")
        logs+=("$log")
        ignored+=("${directories[@]/#/--ignore=}")
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
