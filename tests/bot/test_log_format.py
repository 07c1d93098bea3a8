"""What an operator's log collector reads from `qinglian serve`: every line, from the first start's training of
the default model to uvicorn's own and the shutdown, is `time level logger: message` (docs/deploy.md, section 15)."""

from __future__ import annotations

import re
from pathlib import Path

from tests.conftest import LiveService

LINE = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} (DEBUG|INFO|WARNING|ERROR|CRITICAL) [\w.]+: \S")


def test_every_line_of_a_first_start_and_a_stop_has_a_time_a_level_and_a_logger(tmp_path: Path) -> None:
    """Seen reading the logs of a new install: the training progress, the demo administrator's notice (over three
    lines), the banner and uvicorn's `INFO:     Started server process` had no time and no level, and a
    collector parsing `time level logger: message` dropped or mangled them."""
    data_dir = tmp_path / "data"
    (data_dir / "models").mkdir(parents=True)  # no model yet: the first start trains the default one
    service = LiveService(data_dir, {"QINGLIAN_TELEGRAM_TOKEN": ""})
    try:
        service.start(timeout=120)
    finally:
        service.stop()
    lines = service.log().splitlines()
    assert [line for line in lines if not LINE.match(line)] == []
    text = "\n".join(lines)
    # what the lines still say, each on its one line
    assert re.search(r" WARNING bot\.app: DEMO ONLY — created administrator 'demo-admin' with password \S+ for the "
                     r"embedded default; change it when you first sign in", text), text
    assert re.search(r" INFO nlp\.training: default model \S+ trained in", text), text
    assert re.search(r" INFO bot\.cli: Qinglian: web chat on http://127\.0\.0\.1:\d+/ · database sqlite", text), text
    assert re.search(r" INFO uvicorn: Uvicorn running on http://127\.0\.0\.1:\d+", text), text
    assert re.search(r" INFO uvicorn: Application shutdown complete", text), text
    assert " uvicorn.error:" not in text  # uvicorn's start and stop lines are no errors
