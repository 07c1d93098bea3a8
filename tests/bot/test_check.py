"""`qinglian check` against a real database and the stand-in Bot API server."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port
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
        assert "✗ database: no database at" in before.stdout and "qinglian db upgrade" in before.stdout
        subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=REPO, check=True,
                       capture_output=True, env={"PATH": "/usr/bin:/bin", **env})
        ready = _check(env)
        assert ready.returncode == 0, ready.stdout
        assert "✓ telegram: @qinglian_test_bot via long polling" in ready.stdout
        wrong_token = _check({**env, "QINGLIAN_TELEGRAM_TOKEN": "555:WRONG"})
        assert wrong_token.returncode == 1 and "✗ telegram: Bot API refused the token" in wrong_token.stdout
        # a Redis that does not answer would refuse every console login: check says so (seen deploying)
        no_redis = _check({**env, "QINGLIAN_REDIS_URL": "redis://127.0.0.1:9/0"})
        assert no_redis.returncode == 1 and "✗ redis: no answer from QINGLIAN_REDIS_URL" in no_redis.stdout
        assert "✓ redis: answers" in _check({**env, "QINGLIAN_REDIS_URL": "redis://127.0.0.1:6379/0"}).stdout
    finally:
        standin.stop()


def test_check_gets_the_wechat_token_through_the_services_store(tmp_path: Path) -> None:
    import sqlite3

    from tests.standins.wechat_server import WeChatStandIn

    wechat = WeChatStandIn(token="checktoken", app_id="wxcheck0000000001", app_secret="s3cret")
    wechat.start()
    try:
        env = {"QINGLIAN_DATA_DIR": str(tmp_path), "QINGLIAN_WECHAT_TOKEN": "checktoken",
               "QINGLIAN_WECHAT_APP_ID": "wxcheck0000000001", "QINGLIAN_WECHAT_APP_SECRET": "s3cret",
               "QINGLIAN_WECHAT_API_URL": wechat.root_url}
        subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=REPO, check=True,
                       capture_output=True, env={"PATH": "/usr/bin:/bin", **env})
        ready = _check(env)
        assert ready.returncode == 0, ready.stdout
        assert "✓ wechat: app wxcheck0000000001, access token available, plaintext mode" in ready.stdout
        with sqlite3.connect(tmp_path / "qinglian.db") as db:
            assert db.execute("SELECT app_id FROM wechat_access_tokens").fetchall() == [("wxcheck0000000001",)]
        wrong = _check({**env, "QINGLIAN_WECHAT_APP_SECRET": "wrong", "QINGLIAN_DATA_DIR": str(tmp_path / "b")})
        assert wrong.returncode == 1 and "✗ wechat: no access token" in wrong.stdout
        assert "allow-list" not in wrong.stdout  # a wrong secret (40125), not this server's address
        elsewhere = {**env, "QINGLIAN_WECHAT_API_URL": "http://127.0.0.1:9",  # nothing listens there
                     "QINGLIAN_DATA_DIR": str(tmp_path / "c")}
        subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=REPO, check=True,
                       capture_output=True, env={"PATH": "/usr/bin:/bin", **elsewhere})
        unreachable = _check(elsewhere)
        assert unreachable.returncode == 1 and "cannot be reached from this server" in unreachable.stdout
        assert "allow-list" not in unreachable.stdout  # the network, not the account's IP allow-list
    finally:
        wechat.stop()


def _line(output: str, name: str) -> str:
    return next(line for line in output.splitlines() if line[2:].startswith(f"{name}: "))


def test_the_key_line_says_it_could_not_check_when_the_database_is_unreachable(tmp_path: Path) -> None:
    unreachable = _check({"QINGLIAN_DATA_DIR": str(tmp_path),
                          "QINGLIAN_DATABASE_URL": "postgresql+asyncpg://qinglian@127.0.0.1:1/qinglian"})
    assert unreachable.returncode == 1
    assert _line(unreachable.stdout, "encryption keys") == (
        "✗ encryption keys: not checked: the database is unreachable (see the database line)")


def test_the_key_line_counts_the_evidence_and_model_files_and_names_a_missing_key(tmp_path: Path) -> None:
    import os

    from nlp.artifact import MODEL_FILE, purpose_of
    from storage.crypto import DataKey
    from storage.evidence_files import purpose_of as evidence_purpose
    from storage.evidence_files import write_encrypted
    from tests.conftest import make_test_keyring

    ring = make_test_keyring()
    env = {"QINGLIAN_DATA_DIR": str(tmp_path), "QINGLIAN_ENCRYPTION_KEY": os.environ["QINGLIAN_ENCRYPTION_KEY"],
           "QINGLIAN_PSEUDONYM_KEY": os.environ["QINGLIAN_PSEUDONYM_KEY"]}
    assert _line(_check(env).stdout, "encryption keys") == (
        f"✓ encryption keys: current key {ring.current.key_id}; nothing stored yet")
    assert not (tmp_path / "qinglian.db").exists()  # check looks, it does not create the database
    subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=REPO, check=True,
                   capture_output=True, env={"PATH": "/usr/bin:/bin", **env})
    write_encrypted(ring, tmp_path / "evidence" / "a.jpg", b"jpeg", purpose=evidence_purpose("a.jpg"))
    write_encrypted(ring, tmp_path / "models" / "v1" / MODEL_FILE, b"model", purpose=purpose_of("v1"))

    ready = _check(env)
    assert _line(ready.stdout, "encryption keys") == (
        f"✓ encryption keys: current key {ring.current.key_id}, 0 values under it, and 1 evidence file and "
        "1 model file")

    old_key = DataKey(b"m" * 32)
    write_encrypted(ring, tmp_path / "models" / "v2" / MODEL_FILE, b"model", purpose=purpose_of("v2"), key=old_key)
    missing = _check(env)
    assert missing.returncode == 1
    assert _line(missing.stdout, "encryption keys") == (
        f"✗ encryption keys: values under keys missing from the key ring: {old_key.key_id} (1 model file); "
        "add the key to QINGLIAN_ENCRYPTION_OLD_KEYS")


def test_check_refuses_a_wrong_code_ceiling_a_few_mistyping_residents_would_reach(tmp_path: Path) -> None:
    """At 20 wrong codes per address (5 per resident) four residents behind one NAT locked out everyone there."""
    from tests.conftest import city_file

    env = {"QINGLIAN_DATA_DIR": str(tmp_path)}
    subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=REPO, check=True,
                   capture_output=True, env={"PATH": "/usr/bin:/bin", **env})
    shipped = _check(env)
    low = _check({**env, "QINGLIAN_CONFIG_FILE": str(city_file(tmp_path, {"status_wrong_codes_per_ip": 20}))})

    assert shipped.returncode == 0, shipped.stdout
    assert ("✓ receipt-code limits: wrong codes in 10 minutes: 5 per resident, 100 per address, 200 per platform "
            "address") in shipped.stdout
    assert low.returncode == 1
    assert ("✗ receipt-code limits: status_wrong_codes_per_ip = 20 under 10 × status_wrong_codes (5): a few "
            "residents mistyping behind one network would lock out every code from it") in low.stdout


def _check_in_process(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **settings: str) -> tuple[int, str]:
    """`qinglian check` run in this process as an operator's shell runs it through a pipe (`| grep ✗`, a CI log, the
    journal): no terminal, so no COLUMNS."""
    from typer.testing import CliRunner

    from bot.cli import app

    for name in [name for name in os.environ if name.startswith("QINGLIAN_") and not name.endswith("_KEY")]:
        monkeypatch.delenv(name)
    monkeypatch.delenv("COLUMNS", raising=False)
    monkeypatch.setenv("QINGLIAN_DATA_DIR", str(tmp_path))
    for name, value in settings.items():
        monkeypatch.setenv(f"QINGLIAN_{name.upper()}", value)
    result = CliRunner().invoke(app, ["check"])
    return result.exit_code, result.output


def test_each_finding_is_one_line_even_without_a_terminal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Through a pipe rich wrapped a finding at 80 columns: `qinglian check | grep ✗` showed half the reason."""
    code, output = _check_in_process(monkeypatch, tmp_path)
    assert code == 1  # no database yet
    lines = output.splitlines()
    assert lines and all(line[:2] in ("✓ ", "✗ ") for line in lines), output
    assert "creates it at revision" in _line(output, "database")


def test_an_unreachable_database_line_names_the_setting_and_what_to_look_at(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    code, output = _check_in_process(monkeypatch, tmp_path,
                                     database_url=f"postgresql+asyncpg://qinglian:s3cretpw@127.0.0.1:{port}/qinglian")
    line = _line(output, "database")
    assert code == 1 and line.startswith("✗ database: cannot open the database at "
                                         f"postgresql+asyncpg://qinglian:***@127.0.0.1:{port}/qinglian: ")
    assert "QINGLIAN_DATABASE_URL" in line and "PostgreSQL" in line
    assert "s3cretpw" not in output


@pytest.mark.parametrize(("given", "missing"), [
    ({"wechat_app_id": "wxhalf000000000001", "wechat_app_secret": "halfsecret"}, "QINGLIAN_WECHAT_TOKEN"),
    ({"wechat_aes_key": "a" * 43}, "QINGLIAN_WECHAT_TOKEN, QINGLIAN_WECHAT_APP_ID, QINGLIAN_WECHAT_APP_SECRET"),
])
def test_wechat_settings_half_set_are_a_failed_check_not_wechat_off(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, given: dict[str, str], missing: str) -> None:
    """An operator who uncommented the credentials and forgot the token was told "off" and went live without WeChat."""
    code, output = _check_in_process(monkeypatch, tmp_path, **given)
    line = _line(output, "wechat")
    assert code == 1 and line.startswith("✗ wechat: ") and f"missing {missing}" in line, line
    assert "halfsecret" not in output and "a" * 43 not in output


def test_a_bot_api_address_that_answers_no_json_is_named_as_such_not_unreachable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """QINGLIAN_TELEGRAM_API_URL pointed at a server that is not a Bot API (here the WeChat stand-in, as a proxy's
    error page would) was reported "not reachable: Expecting value: line 1 column 1 (char 0)"."""
    from tests.standins.wechat_server import WeChatStandIn

    other = WeChatStandIn(token="checktoken", app_id="wxcheck0000000001", app_secret="s3cret")
    other.start()
    try:
        code, output = _check_in_process(monkeypatch, tmp_path, telegram_token="555:CHECK-token",
                                         telegram_api_url=other.root_url)
    finally:
        other.stop()
    line = _line(output, "telegram")
    assert code == 1 and line == (f"✗ telegram: {other.root_url} answered HTTP 404 without the Bot API's JSON: is "
                                  "QINGLIAN_TELEGRAM_API_URL the root of a Bot API server (https://api.telegram.org)?")
    assert "CHECK-token" not in output


def test_a_wecom_robot_left_at_the_examples_placeholder_fails_the_check(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The example's robot line, uncommented as it is, passed as "every configured robot webhook is set"; the
    queue's staff then got no notice, each one a failed delivery."""
    from tests.conftest import city_file

    path = city_file(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace(
        '{ code = "clean_hall", ', '{ code = "clean_hall", wecom_webhook_env = "QINGLIAN_WECOM_CLEAN_HALL", '),
        encoding="utf-8")
    code, output = _check_in_process(monkeypatch, tmp_path, config_file=str(path), wecom_clean_hall=(
        "https://qyapi.weixin.qq.com/cgi-bin/webhook/send?key=CHANGE_ME"))
    assert code == 1 and _line(output, "wecom robots") == (
        "✗ wecom robots: still the example's CHANGE_ME placeholder: QINGLIAN_WECOM_CLEAN_HALL (set the robot's "
        "webhook URL from the WeCom group)")


def test_every_setting_that_cannot_be_read_is_listed_in_one_run_without_its_value(tmp_path: Path) -> None:
    """Seen setting up a new install: `check` stopped at the first invalid setting; fixed, the next run named the
    next one. It now lists every one (each named, with what it must be), exits 2, and repeats no value."""
    secret_password = "pa55-w0rd-never-shown"
    env = {"QINGLIAN_DATA_DIR": str(tmp_path), "QINGLIAN_TELEGRAM_TOKEN": "not-a-token",
           "QINGLIAN_DATABASE_URL": f"mysql://qinglian:{secret_password}@db/qinglian",
           "QINGLIAN_TELEGRAM_MAX_RATE": "fast", "QINGLIAN_ENVIRONMENT": "prod",
           "QINGLIAN_WECHAT_APP_SECRETT": "wechat-secret-never-shown", "QINGLIAN_REDIS_URL": "http://cache:6379"}
    result = _check(env)
    assert result.returncode == 2, result.stdout + result.stderr
    lines = (result.stdout + result.stderr).splitlines()
    problems = [line for line in lines if line.startswith("✗ ")]
    assert len(problems) == 6, lines
    assert "✗ QINGLIAN_DATABASE_URL: must start with sqlite+aiosqlite:// or postgresql+asyncpg://" in problems
    assert "✗ QINGLIAN_TELEGRAM_TOKEN: must look like 123456:ABC-DEF (the token BotFather gave you)" in problems
    assert any(line.startswith("✗ QINGLIAN_TELEGRAM_MAX_RATE: ") and "number" in line for line in problems)
    assert any(line.startswith("✗ QINGLIAN_ENVIRONMENT: ") and "'production'" in line for line in problems)
    assert any(line.startswith("✗ QINGLIAN_REDIS_URL: must start with redis://") for line in problems)
    assert any(line.startswith("✗ QINGLIAN_WECHAT_APP_SECRETT: is not a setting: did you mean "
                               "QINGLIAN_WECHAT_APP_SECRET?") for line in problems)
    assert secret_password not in result.stdout + result.stderr
    assert "wechat-secret-never-shown" not in result.stdout + result.stderr
    assert "6 problems in the configuration" in lines[-1]
