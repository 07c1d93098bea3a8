"""`qinglian check` against a real database and the stand-in Bot API server."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO
from tests.standins.telegram_server import TelegramStandIn


def _check(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", "check"], cwd=REPO, capture_output=True, text=True,
                          timeout=60, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **env})


def test_check_reports_each_problem_and_passes_when_ready(tmp_path: Path) -> None:
    standin = TelegramStandIn(token="555:CHECK-token")
    standin.start()
    try:
        env = {"QINGLIAN_DATA_DIR": str(tmp_path), "QINGLIAN_TELEGRAM_TOKEN": "555:CHECK-token",
               "QINGLIAN_TELEGRAM_API_URL": standin.root_url}
        before = _check(env)
        assert before.returncode == 1
        assert "✗ database: schema at nothing" in before.stdout
        subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=REPO, check=True,
                       capture_output=True, env={"PATH": "/usr/bin:/bin", **env})
        ready = _check(env)
        assert ready.returncode == 0, ready.stdout
        assert "✓ telegram: @qinglian_test_bot via long polling" in ready.stdout
        wrong_token = _check({**env, "QINGLIAN_TELEGRAM_TOKEN": "555:WRONG"})
        assert wrong_token.returncode == 1 and "✗ telegram: Bot API refused the token" in wrong_token.stdout
    finally:
        standin.stop()
