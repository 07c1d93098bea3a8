"""`qinglian staff …` on a migrated database, and the first administrator on a fresh install."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from bot.cli import app
from bot.config import load_settings
from bot.staff_cli import DEMO_ADMIN, PRODUCTION_FIRST_ADMIN, ensure_first_admin
from storage import staff_actions
from storage.migrate import upgrade
from tests.conftest import staff_password_hashing

PASSWORDS = staff_password_hashing()

runner = CliRunner()


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    for variable in ("QINGLIAN_DATABASE_URL", "QINGLIAN_CONFIG_FILE", "QINGLIAN_ENVIRONMENT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("QINGLIAN_DATA_DIR", str(tmp_path))
    monkeypatch.setenv("QINGLIAN_SECRET_KEY", "cli-secret-" + "y" * 40)
    monkeypatch.setenv("COLUMNS", "200")
    settings = load_settings()
    upgrade(settings.resolved_database_url, settings.resolved_keyring())
    return tmp_path


def qinglian(*arguments: str) -> tuple[int, str]:
    result = runner.invoke(app, ["staff", *arguments])
    return result.exit_code, result.output


def test_accounts_are_added_listed_changed_and_disabled(data_dir: Path) -> None:
    hand_over = ("they sign in at http://127.0.0.1:8000/console and choose their own password there before anything "
                 "else\n")
    assert qinglian("add", "wang.wu", "--name", "王五", "--queue", "clean_hall", "--queue", "petitions",
                    "--password", "a long enough password") == (
        0, "created reviewer wang.wu in clean_hall, petitions\nsign in at http://127.0.0.1:8000/console\n")
    assert qinglian("add", "boss", "--role", "admin", "--password", "another long password") == (
        0, f"created admin boss\ngive boss the password: {hand_over}")
    assert qinglian("assign", "wang.wu", "clean_medical", "clean_hall") == (
        0, "wang.wu works in clean_hall, clean_medical\n")
    assert qinglian("role", "wang.wu", "supervisor") == (0, "wang.wu is now supervisor\n")
    assert qinglian("disable", "wang.wu") == (0, "disabled wang.wu\n")
    code, listing = qinglian("list")
    rows = {line.split("│")[1].strip(): [cell.strip() for cell in line.split("│")[2:-1]]
            for line in listing.splitlines() if line.startswith("│")}
    assert code == 0
    assert rows == {"boss": ["boss", "admin", "-", "yes", "off", "-"],
                    "wang.wu": ["王五", "supervisor", "clean_hall, clean_medical", "no", "off", "-"]}
    assert qinglian("enable", "wang.wu") == (0, "enabled wang.wu\n")
    assert qinglian("reset-password", "wang.wu", "--password", "a brand new password") == (
        0, f"password of wang.wu changed\ngive wang.wu the password: {hand_over}")


def test_mistakes_are_one_line_errors(data_dir: Path) -> None:
    assert qinglian("add", "zhao", "--queue", "nowhere", "--password", "a long enough password")[0] == 2
    code, output = qinglian("add", "zhao", "--password", "short")
    assert (code, output) == (2, "qinglian: a password needs at least 10 characters\n")
    assert qinglian("add", "zhao", "--password", "a long enough password")[0] == 0
    assert qinglian("add", "zhao", "--password", "a long enough password") == (
        2, "qinglian: user 'zhao' exists already\n")
    assert qinglian("disable", "nobody") == (2, "qinglian: no staff user 'nobody'\n")


async def test_a_fresh_install_gets_a_marked_demo_admin_once(database: Any) -> None:
    notice = await ensure_first_admin(database, "development", PASSWORDS)
    assert notice is not None and notice.startswith("DEMO ONLY")
    password = re.search(rf"administrator '{DEMO_ADMIN}' with password (\S+)", notice)
    assert password
    async with database.read_sessionmaker() as session:
        admin = await staff_actions.get_staff_by_username(session, DEMO_ADMIN)
    assert admin is not None and admin.role == "admin" and PASSWORDS.verify(admin.password_hash, password.group(1))
    assert await ensure_first_admin(database, "development", PASSWORDS) is None


async def test_production_gets_instructions_and_no_account(database: Any) -> None:
    assert await ensure_first_admin(database, "production", PASSWORDS) == PRODUCTION_FIRST_ADMIN
    async with database.read_sessionmaker() as session:
        assert await staff_actions.count_staff(session) == 0


def _audit_entries(data_dir: Path) -> list[tuple[str, int | None, dict[str, Any]]]:
    import asyncio

    from storage import audit
    from storage.db import Database

    async def read() -> list[tuple[str, int | None, dict[str, Any]]]:
        settings = load_settings()
        database = Database.connect(settings.resolved_database_url, settings.resolved_keyring())
        try:
            async with database.read_sessionmaker() as session:
                rows, _ = await audit.audit_log(session, page=1, per_page=100)
        finally:
            await database.dispose()
        return [(entry.action, entry.actor_id, entry.detail) for entry, _, _ in reversed(rows)]

    return asyncio.run(read())


def test_the_audit_log_names_who_ran_each_staff_command(data_dir: Path) -> None:
    """Seen as an auditor: an account created, disabled or given a new password from the command line was in the
    audit log as done by "system", with nothing saying who ran the command (the model commands say it)."""
    assert qinglian("add", "li.si", "--queue", "clean_hall", "--password", "a long enough password")[0] == 0
    assert qinglian("role", "li.si", "supervisor")[0] == 0
    assert qinglian("reset-password", "li.si", "--password", "a brand new password")[0] == 0
    assert qinglian("disable", "li.si")[0] == 0
    entries = _audit_entries(data_dir)
    assert [action for action, _, _ in entries] == [
        "staff.create", "staff.assign_queues", "staff.role", "staff.reset_password", "staff.disable"]
    assert all(actor is None and str(detail.get("via", "")).startswith("command line")
               for _, actor, detail in entries), entries


def _must_change_password(username: str) -> bool:
    import asyncio

    from storage.db import Database

    async def read() -> bool:
        settings = load_settings()
        database = Database.connect(settings.resolved_database_url, settings.resolved_keyring())
        try:
            async with database.read_sessionmaker() as session:
                user = await staff_actions.get_staff_by_username(session, username)
        finally:
            await database.dispose()
        assert user is not None
        return bool(user.must_change_password)

    return asyncio.run(read())


def test_an_account_made_for_someone_else_has_them_choose_their_own_password(data_dir: Path) -> None:
    """Seen as an operator: `staff add bob …` made an account whose password the operator chose and knew for good
    (the console's own form makes its owner change it), and nothing said where bob signs in."""
    code, first = qinglian("add", "chen", "--role", "admin", "--password", "the first admin's own password")
    assert code == 0 and first == "created admin chen\nsign in at http://127.0.0.1:8000/console\n"
    assert not _must_change_password("chen")  # the first administrator made their own account (docs/deploy.md §7)

    code, made = qinglian("add", "bob", "--queue", "clean_hall", "--password", "violet kettle harbour 42")
    assert code == 0 and made == (
        "created reviewer bob in clean_hall\ngive bob the password: they sign in at http://127.0.0.1:8000/console "
        "and choose their own password there before anything else\n")
    assert _must_change_password("bob")

    code, reset = qinglian("reset-password", "chen", "--password", "amber lantern quietly 77")
    assert code == 0 and reset.endswith("give chen the password: they sign in at http://127.0.0.1:8000/console "
                                        "and choose their own password there before anything else\n")
    assert _must_change_password("chen")


def test_a_typed_password_is_asked_twice_and_an_existing_name_is_refused_before_it(data_dir: Path) -> None:
    """A mistyped hidden password made an account nobody could sign in to; adding a name that exists asked for a
    password first and then refused the name."""
    differ = runner.invoke(app, ["staff", "add", "zhao"], input="a long enough password\nanother long password\n")
    assert differ.exit_code != 0 and "do not match" in differ.output
    assert qinglian("list")[1].count("│ zhao ") == 0
    same = runner.invoke(app, ["staff", "add", "zhao"], input="a long enough password\na long enough password\n")
    assert same.exit_code == 0, same.output
    again = runner.invoke(app, ["staff", "add", "zhao"], input="")
    assert (again.exit_code, again.output) == (2, "qinglian: user 'zhao' exists already\n")


def test_the_first_real_account_after_the_demo_administrator_is_the_operators_own(data_dir: Path) -> None:
    """A development start made the demo administrator; the operator's own first account was then treated as made for
    someone else and asked for a new password at once."""
    import asyncio

    from storage.db import Database

    async def demo() -> None:
        settings = load_settings()
        database = Database.connect(settings.resolved_database_url, settings.resolved_keyring())
        try:
            assert (await ensure_first_admin(database, "development", PASSWORDS) or "").startswith("DEMO ONLY")
        finally:
            await database.dispose()

    asyncio.run(demo())
    code, output = qinglian("add", "chen", "--role", "admin", "--password", "the first admin's own password")
    assert code == 0 and output.endswith("sign in at http://127.0.0.1:8000/console\n")
    assert not _must_change_password("chen")
