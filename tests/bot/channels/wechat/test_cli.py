"""`qinglian wechat menu` (bot/channels/wechat/cli.py) as an operator meets it: the menu printed with --dry-run in
either language, and each refusal — a language it has no names for, an account without credentials, an API that
cannot be reached — a one-line reason and an exit status, with nothing published. Publishing against the WeChat
stand-in is tests/channels/test_wechat.py's."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from bot.cli import app
from tests.conftest import free_port

runner = CliRunner()


def _env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    return {"QINGLIAN_DATA_DIR": str(tmp_path), "QINGLIAN_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'q.db'}",
            "QINGLIAN_WECHAT_APP_ID": "", "QINGLIAN_WECHAT_APP_SECRET": "", **overrides}


def test_a_dry_run_prints_the_three_buttons_in_the_citys_language_or_the_one_asked_for(tmp_path: Path) -> None:
    chinese = runner.invoke(app, ["wechat", "menu", "--dry-run"], env=_env(tmp_path))
    assert chinese.exit_code == 0, chinese.output
    menu = json.loads(chinese.output)
    assert [button["name"] for button in menu["button"]] == ["我要举报", "查询进度", "使用说明"]
    assert all(button["type"] == "click" and button["key"] for button in menu["button"])
    english = runner.invoke(app, ["wechat", "menu", "--dry-run", "--locale", "en"], env=_env(tmp_path))
    assert english.exit_code == 0, english.output
    assert [button["key"] for button in json.loads(english.output)["button"]] == \
        [button["key"] for button in menu["button"]]  # the same buttons, named in English
    assert [button["name"] for button in json.loads(english.output)["button"]] != \
        [button["name"] for button in menu["button"]]
    assert not (tmp_path / "q.db").exists()  # a dry run touches no database


def test_a_language_without_button_names_is_refused(tmp_path: Path) -> None:
    refused = runner.invoke(app, ["wechat", "menu", "--dry-run", "--locale", "fr"], env=_env(tmp_path))
    assert refused.exit_code == 2
    assert "--locale must be zh or en" in refused.output


def test_publishing_without_the_accounts_credentials_is_refused_naming_them(tmp_path: Path) -> None:
    refused = runner.invoke(app, ["wechat", "menu"], env=_env(tmp_path, QINGLIAN_WECHAT_APP_ID="wx0123456789abcdef"))
    assert refused.exit_code == 2
    assert "set QINGLIAN_WECHAT_APP_ID and QINGLIAN_WECHAT_APP_SECRET to publish the menu" in refused.output
    assert not (tmp_path / "q.db").exists()


def test_an_api_that_cannot_be_reached_is_named_and_the_command_fails(tmp_path: Path) -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    failed = runner.invoke(app, ["wechat", "menu"], env=_env(
        tmp_path, QINGLIAN_WECHAT_APP_ID="wx0123456789abcdef", QINGLIAN_WECHAT_APP_SECRET="s" * 32,
        QINGLIAN_WECHAT_API_URL=closed))
    assert failed.exit_code == 1
    assert f"WeChat API at {closed} not reachable" in failed.output
    assert "menu published" not in failed.output
