"""Production refuses a guessable secret key and an active demo administrator; `qinglian staff` checks
passwords, warns about a reviewer without queues, revokes tokens on a reset and never cuts names."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config import ConfigError, load_settings
from bot.staff_cli import DEMO_ADMIN, DEMO_ADMIN_IN_PRODUCTION, ensure_first_admin
from storage import staff_actions
from storage.migrate import upgrade
from tests.conftest import staff_password_hashing

PASSWORDS = staff_password_hashing()

runner = CliRunner()
RANDOM_KEY = "ZCZC6UKxcwPhPOcM8n6l22BAie7ui-V-mGQbm5-O0qxCy3ds"


@pytest.mark.parametrize("secret", ["p" * 48, "abcd" * 12, "0123456789abcdef" * 2, "passwordpasswordpassword12345678",
                                    "qwertyuiopasdfghjklzxcvbnm123456"])
def test_production_refuses_a_guessable_secret_key(tmp_path: Path, secret: str) -> None:
    settings = load_settings(environment="production", data_dir=tmp_path, secret_key=secret)
    with pytest.raises(ConfigError, match="QINGLIAN_SECRET_KEY is too easy to guess"):
        settings.resolved_secret_key()
    development = load_settings(environment="development", data_dir=tmp_path, secret_key=secret)
    assert development.resolved_secret_key() == secret.encode()  # a laptop may use anything


def test_production_takes_a_random_secret_key(tmp_path: Path) -> None:
    import secrets

    for key in (RANDOM_KEY, secrets.token_urlsafe(32), secrets.token_hex(32)):
        assert load_settings(environment="production", data_dir=tmp_path, secret_key=key).resolved_secret_key() == \
            key.encode()


async def test_production_refuses_to_start_while_the_demo_admin_is_active(database: Any) -> None:
    assert (await ensure_first_admin(database, "development", PASSWORDS) or "").startswith("DEMO ONLY")
    with pytest.raises(ConfigError) as refused:
        await ensure_first_admin(database, "production", PASSWORDS)
    assert str(refused.value) == DEMO_ADMIN_IN_PRODUCTION
    async with database.sessionmaker.begin() as session:
        demo = await staff_actions.get_staff_by_username(session, DEMO_ADMIN)
        assert demo is not None
        await staff_actions.set_active(session, demo, False)
    assert await ensure_first_admin(database, "production", PASSWORDS) is None  # disabled: the service starts


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in ("QINGLIAN_DATABASE_URL", "QINGLIAN_CONFIG_FILE", "QINGLIAN_ENVIRONMENT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("QINGLIAN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("QINGLIAN_SECRET_KEY", "cli-secret-" + "y" * 40)
    settings = load_settings()
    upgrade(settings.resolved_database_url, settings.resolved_keyring())
    return tmp_path


def staff(*arguments: str, columns: int = 200) -> tuple[int, str, str]:
    result = runner.invoke(app, ["staff", *arguments], env={"COLUMNS": str(columns)})
    return result.exit_code, result.stdout, result.stderr


def test_the_cli_refuses_weak_passwords(data_dir: Path) -> None:
    assert staff("add", "zhao", "--password", "password1234")[0] == 2
    code, _, error = staff("add", "zhao", "--password", "zhao12345678")
    assert (code, error) == (2, "qinglian: a password may not contain the username or the name of the account\n")
    assert staff("add", "zhao", "--queue", "clean_hall", "--password", "a long enough password")[0] == 0
    assert staff("reset-password", "zhao", "--password", "1111111111111")[0] == 2


def test_a_reviewer_without_queues_is_created_with_a_warning(data_dir: Path) -> None:
    code, out, error = staff("add", "lonely", "--password", "a long enough password")
    assert (code, out) == (0, "created reviewer lonely\nsign in at http://127.0.0.1:8000/console\n")
    assert error == ("warning: reviewer lonely has no queues and sees no cases; give them some with "
                     "`qinglian staff assign lonely <queue> ...`\n")
    assert staff("add", "boss", "--role", "admin", "--password", "another long password")[2] == ""


def test_a_reset_revokes_the_api_tokens(data_dir: Path) -> None:
    import asyncio

    from storage.db import Database
    from tests.conftest import make_test_keyring

    assert staff("add", "zhao", "--queue", "clean_hall", "--password", "a long enough password")[0] == 0
    settings = load_settings()

    async def make_token() -> None:
        database = Database.connect(settings.resolved_database_url, make_test_keyring())
        try:
            async with database.sessionmaker.begin() as session:
                user = await staff_actions.get_staff_by_username(session, "zhao")
                assert user is not None
                await staff_actions.create_api_token(session, user, "script", actor=user)
        finally:
            await database.dispose()

    asyncio.run(make_token())
    assert staff("reset-password", "zhao", "--password", "a brand new password")[1] == (
        "password of zhao changed\nrevoked 1 API token of zhao\ngive zhao the password: they sign in at "
        "http://127.0.0.1:8000/console and choose their own password there before anything else\n")


def test_staff_list_does_not_cut_names_in_a_narrow_terminal(data_dir: Path) -> None:
    long_name = "湖南省长沙市纪律检查委员会第三纪检监察室审核员王芳芳"
    assert staff("add", "wang.fangfang.reviewer", "--name", long_name, "--queue", "clean_hall",
                 "--queue", "petitions", "--password", "a long enough password")[0] == 0
    code, listing, _ = staff("list", columns=60)
    assert code == 0
    rows = [[cell.strip() for cell in line.split("│")[1:-1]] for line in listing.splitlines() if line.startswith("│")]
    assert rows == [["wang.fangfang.reviewer", long_name, "reviewer", "clean_hall, petitions", "yes", "off", "-"]]


def test_a_production_start_with_the_demo_admin_active_is_refused_in_one_line(tmp_path: Path) -> None:
    """As an operator runs it: `qinglian serve` says why it will not start, without a traceback."""
    import asyncio
    import os
    import subprocess
    import sys

    from storage.db import Database
    from tests.conftest import REPO, free_port, make_test_keyring

    database_url = f"sqlite+aiosqlite:///{tmp_path / 'qinglian.db'}"
    upgrade(database_url, make_test_keyring())

    async def development_start() -> None:  # what a development start on the same database leaves behind
        database = Database.connect(database_url, make_test_keyring())
        try:
            assert (await ensure_first_admin(database, "development", PASSWORDS) or "").startswith("DEMO ONLY")
        finally:
            await database.dispose()

    asyncio.run(development_start())
    environment = {**os.environ, "QINGLIAN_ENVIRONMENT": "production", "QINGLIAN_SECRET_KEY": RANDOM_KEY,
                   "QINGLIAN_DATA_DIR": str(tmp_path), "QINGLIAN_DATABASE_URL": database_url}
    started = subprocess.run([sys.executable, "-m", "bot.cli", "serve", "--port", str(free_port())], cwd=REPO,
                             env=environment, capture_output=True, text=True, timeout=120)
    assert started.returncode == 2
    assert "Traceback" not in started.stderr + started.stdout
    assert started.stderr.strip().splitlines() == [f"qinglian: {DEMO_ADMIN_IN_PRODUCTION}"]
