"""The `qinglian` command carries the classifier's commands as the architecture's contract says."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from storage.db import masked_url
from tests.conftest import REPO, deployed_at, free_port, shared_models_dir

if TYPE_CHECKING:
    from bot.config import Settings


def test_qinglian_classify_and_model_list(tmp_path: Path) -> None:
    shutil.copytree(shared_models_dir(), tmp_path / "models")
    env = {"PATH": "/usr/bin:/bin", "QINGLIAN_DATA_DIR": str(tmp_path), "COLUMNS": "200"}
    lines = '{"id": "a", "text": "村支书把低保名额给了自己亲戚，村务三年不公开"}\n医院骨科医生收红包才肯排手术\n'
    result = subprocess.run([sys.executable, "-m", "bot.cli", "classify", "-"], input=lines, cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    answers = [json.loads(line) for line in result.stdout.splitlines()]
    assert [(a["id"], a["label"]) for a in answers] == [("a", "village_affairs"), (2, "medical")]
    assert all(len(a["top"]) == 3 for a in answers)
    listed = subprocess.run([sys.executable, "-m", "bot.cli", "model", "list"], cwd=REPO, env=env,
                            capture_output=True, text=True, timeout=120)
    assert listed.returncode == 0 and "default model" in listed.stdout


def test_the_qinglian_command_runs_hot_issues_and_reply_quality_on_json_lines(tmp_path: Path) -> None:
    """The issue's command lines, through the installed entry point: `qinglian hotspots` groups the plant's
    messages together and `qinglian reply-quality` scores the on-topic reply above the off-topic one."""
    from tests.nlp.test_mining_cli import _hot_rows, _write
    from tests.nlp.test_reply_quality import OFF_TOPIC, ON_TOPIC, REPORT

    qinglian = str(Path(sys.executable).with_name("qinglian"))
    messages = _write(tmp_path / "messages.jsonl", _hot_rows())
    hot = subprocess.run([qinglian, "hotspots", "--input", str(messages), "--top", "1"], capture_output=True,
                         text=True, check=True)
    [first] = [json.loads(line) for line in hot.stdout.splitlines()]
    assert sorted(first["message_ids"]) == [f"plant-{number}" for number in range(6)]

    replies = _write(tmp_path / "replies.jsonl", [
        {"id": "on", "text": REPORT, "reply": ON_TOPIC, "time": "2024-03-01", "reply_time": "2024-03-08"},
        {"id": "off", "text": REPORT, "reply": OFF_TOPIC, "time": "2024-03-01", "reply_time": "2024-03-08"}])
    scored = subprocess.run([qinglian, "reply-quality", "--input", str(replies)], capture_output=True, text=True,
                            check=True)
    by_id = {line["id"]: line for line in map(json.loads, scored.stdout.splitlines())}
    assert by_id["on"]["score"] > by_id["off"]["score"]
    assert by_id["off"]["reasons"]


def _db_current(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "bot.cli", "db", "current"], cwd=REPO, capture_output=True,
                          text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **env})


@pytest.mark.postgres
def test_db_current_says_where_the_database_stands_without_creating_it(tmp_path: Path, postgres_server: str) -> None:
    """An operator's first look: a missing SQLite file is reported (not made), a database without a schema
    is named as such, one migrated says it is at the newest revision, and an unreachable server is an error
    with the driver's reason — never a traceback or nothing at all."""
    from storage.migrate import head_revisions
    from tests.conftest import create_postgres_database, drop_postgres_database

    head = ", ".join(sorted(head_revisions()))
    data = {"QINGLIAN_DATA_DIR": str(tmp_path / "data")}
    missing = _db_current(data)
    assert missing.returncode == 1 and "no database at" in missing.stdout and "qinglian db upgrade" in missing.stdout
    assert not (tmp_path / "data" / "qinglian.db").exists()
    upgraded = subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=REPO, capture_output=True,
                              text=True, timeout=300, env={"PATH": "/usr/bin:/bin", **data})
    assert upgraded.returncode == 0, upgraded.stderr
    assert upgraded.stdout.strip().endswith(f"revision {head} (the newest)"), upgraded.stdout  # not "revision head"
    newest = _db_current(data)
    assert (newest.returncode, newest.stdout.strip().endswith(f"revision {head} (the newest)")) == (0, True)

    name, url = create_postgres_database(postgres_server)
    try:
        empty = _db_current({**data, "QINGLIAN_DATABASE_URL": url})
    finally:
        drop_postgres_database(postgres_server, name)
    assert empty.returncode == 1 and "has no schema yet" in empty.stdout
    unreachable = _db_current({**data, "QINGLIAN_DATABASE_URL": "postgresql+asyncpg://postgres@127.0.0.1:1/none"})
    assert unreachable.returncode == 2 and "cannot open the database" in unreachable.stderr
    assert "Traceback" not in unreachable.stderr


def test_a_database_password_with_an_at_sign_never_shows(tmp_path: Path) -> None:
    """Seen deploying: `postgresql+asyncpg://user:p@ss@host/db` was shown as `user:***@ss@host`, half the
    password in the clear. Unencoded, it is refused naming the fix; encoded, every line masks it whole."""
    data = {"QINGLIAN_DATA_DIR": str(tmp_path / "data")}
    unencoded = subprocess.run([sys.executable, "-m", "bot.cli", "db", "upgrade"], cwd=REPO, capture_output=True,
                               text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **data,
                               "QINGLIAN_DATABASE_URL": "postgresql+asyncpg://qinglian:p@ssw0rd@127.0.0.1:1/q"})
    assert unencoded.returncode == 2
    assert unencoded.stderr == ("qinglian: invalid setting QINGLIAN_DATABASE_URL: holds an '@' in its user name or "
                                "password, which must be written %40 (postgresql+asyncpg://user:p%40ss@host/db)\n")
    for command in (["db", "upgrade"], ["db", "current"]):
        encoded = subprocess.run([sys.executable, "-m", "bot.cli", *command], cwd=REPO, capture_output=True,
                                 text=True, timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **data,
                                 "QINGLIAN_DATABASE_URL": "postgresql+asyncpg://qinglian:p%40ssw0rd@127.0.0.1:1/q"})
        assert encoded.returncode == 2
        assert encoded.stderr.startswith("qinglian: cannot open the database at "
                                         "postgresql+asyncpg://qinglian:***@127.0.0.1:1/q: "
                                         if command[1] == "upgrade" else
                                         "postgresql+asyncpg://qinglian:***@127.0.0.1:1/q: cannot open the database")
        assert "ssw0rd" not in encoded.stderr + encoded.stdout


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"], ["db", "upgrade"], ["keys", "status"],
                                     ["staff", "list"], ["db", "backup", "nightly.qlbak"]])
def test_a_database_it_cannot_reach_is_one_line_without_alembics_info(tmp_path: Path, command: list[str]) -> None:
    """Seen deploying: `serve` printed Alembic's INFO lines (plugins set up, "Context impl …") above the one
    line that says what is wrong. And `db backup` said "db.backup was done, but it is not in the audit log" when no
    backup had been written."""
    command = [str(tmp_path / part) if part.endswith(".qlbak") else part for part in command]
    result = subprocess.run([sys.executable, "-m", "bot.cli", *command], cwd=REPO, capture_output=True, text=True,
                            timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200",
                                              "QINGLIAN_DATA_DIR": str(tmp_path / "data"),
                                              "QINGLIAN_DATABASE_URL": "postgresql+asyncpg://q:pw@127.0.0.1:1/q"})
    assert result.returncode == 2
    assert (result.stdout, result.stderr.splitlines()) == ("", [
        "qinglian: cannot open the database at postgresql+asyncpg://q:***@127.0.0.1:1/q: "
        "[Errno 111] Connect call failed ('127.0.0.1', 1)"])


def test_model_commands_are_audited_and_the_models_page_names_who_ran_them(tmp_path: Path) -> None:
    """Seen as an administrator: `qinglian model train/promote/rollback` left no trace in the audit log, and the
    models page listed the command line's promotion without anyone."""
    from bot.config import Settings
    from nlp.corpus import load_seed_corpus
    from storage import audit
    from storage.db import Database

    shutil.copytree(shared_models_dir(), tmp_path / "models")
    env = {"PATH": "/usr/bin:/bin", "QINGLIAN_DATA_DIR": str(tmp_path), "COLUMNS": "200"}

    def qinglian(*arguments: str) -> subprocess.CompletedProcess[str]:
        result = subprocess.run([sys.executable, "-m", "bot.cli", *arguments], cwd=REPO, env=env,
                                capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, result.stderr
        return result

    seed = load_seed_corpus("train")

    def small(per_label: int) -> str:  # a few reports per label: quick to train, and worse than the default
        data = tmp_path / f"small-{per_label}.jsonl"
        data.write_text("\n".join(json.dumps({"text": e.text, "label": e.label}, ensure_ascii=False)
                                  for label in sorted({e.label for e in seed})
                                  for e in [x for x in seed if x.label == label][:per_label]), encoding="utf-8")
        return str(data)

    def new_versions() -> set[str]:
        return {path.name for path in (tmp_path / "models").iterdir()
                if path.is_dir() and not (shared_models_dir() / path.name).exists()}

    # before any service has run on it there is no audit log: the command says so and still does its work,
    # without creating a database
    before = qinglian("model", "train", "--data", small(3))
    assert "is not in an audit log" in before.stderr and not (tmp_path / "qinglian.db").exists()
    unaudited = new_versions()
    assert len(unaudited) == 1
    qinglian("db", "upgrade")
    qinglian("model", "train", "--data", small(4))
    [version] = new_versions() - unaudited
    qinglian("model", "promote", version, "--force")
    qinglian("model", "rollback")

    async def audited() -> list[tuple[str, int | None, dict[str, Any]]]:
        settings = Settings(data_dir=tmp_path)  # the keys the commands generated into the data directory
        database = Database.connect(settings.resolved_database_url, settings.resolved_keyring())
        try:
            async with database.read_sessionmaker() as session:
                rows, _ = await audit.audit_log(session, page=1, per_page=50)
        finally:
            await database.dispose()
        return [(e.action, e.actor_id, e.detail) for e, _, _ in reversed(rows) if e.action.startswith("model.")]

    entries = asyncio.run(audited())
    assert [(action, actor) for action, actor, _ in entries] == [
        ("model.train", None), ("model.promote", None), ("model.rollback", None)]
    assert all(detail["via"].startswith("command line") for _, _, detail in entries)
    assert entries[1][2]["version"] == version and entries[1][2]["forced"] is True
    assert entries[2][2]["version"] != version
    events = json.loads((tmp_path / "models" / "registry.json").read_text(encoding="utf-8"))["events"]
    assert [event["action"] for event in events[-2:]] == ["promote", "rollback"]
    assert all(event["by"].startswith("command line") for event in events[-2:])


def _migrated_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    """The embedded default's settings in `tmp_path/data` (no URL, no configuration file, development), migrated."""
    from bot.config import load_settings
    from storage.migrate import upgrade

    for variable in ("QINGLIAN_DATABASE_URL", "QINGLIAN_CONFIG_FILE", "QINGLIAN_ENVIRONMENT"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("QINGLIAN_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setenv("QINGLIAN_SECRET_KEY", "cli-secret-" + "y" * 40)
    settings = load_settings()
    settings.data_dir.mkdir()
    upgrade(settings.resolved_database_url, settings.resolved_keyring())
    return settings


def test_backup_restore_and_key_rotation_are_in_the_audit_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen as an auditor: a backup carries every reporter's identity out of the service, a restore replaces every
    case, a key rotation re-encrypts them; none of the three left a line in the audit log."""
    from typer.testing import CliRunner

    from bot.cli import app
    from storage import audit
    from storage.db import Database

    settings = _migrated_default(tmp_path, monkeypatch)
    runner = CliRunner()
    archive = tmp_path / "backup.tar.gz"

    def qinglian(*arguments: str) -> None:
        result = runner.invoke(app, list(arguments))
        assert result.exit_code == 0, result.output

    async def audited() -> list[tuple[str, int | None, dict[str, Any]]]:
        database = Database.connect(settings.resolved_database_url, settings.resolved_keyring())
        try:
            async with database.read_sessionmaker() as session:
                rows, _ = await audit.audit_log(session, page=1, per_page=50)
        finally:
            await database.dispose()
        return [(entry.action, entry.actor_id, entry.detail) for entry, _, _ in reversed(rows)]

    qinglian("db", "backup", str(archive))
    qinglian("keys", "rotate")
    entries = asyncio.run(audited())
    assert [(action, actor) for action, actor, _ in entries] == [("db.backup", None), ("keys.rotate", None)]
    assert entries[1][2]["key"] == settings.resolved_keyring().current.key_id
    qinglian("db", "restore", str(archive), "--force")
    # the restore replaced the log with the backup's (which holds the backup's own entry), then wrote its own
    entries = asyncio.run(audited())
    assert [(action, actor) for action, actor, _ in entries] == [("db.backup", None), ("db.restore", None)]
    assert all(str(detail["via"]).startswith("command line") for _, _, detail in entries)
    assert entries[0][2]["file"] == str(archive.resolve()) and entries[1][2]["file"] == str(archive.resolve())


def _qinglian(env: dict[str, str], *command: str) -> subprocess.CompletedProcess[str]:
    """`qinglian <command>` as an operator runs it, with the test run's keys and `env`."""
    keys = {name: os.environ[name] for name in ("QINGLIAN_ENCRYPTION_KEY", "QINGLIAN_PSEUDONYM_KEY")}
    return subprocess.run([sys.executable, "-m", "bot.cli", *command], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **keys, **env})


def _execute(url: str, *statements: str) -> None:
    """Plain SQL on the database, as a newer release or a database administrator would leave it."""
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    async def run() -> None:
        engine = create_async_engine(url)
        try:
            async with engine.begin() as connection:
                for statement in statements:
                    await connection.execute(text(statement))
        finally:
            await engine.dispose()

    asyncio.run(run())


def test_a_database_a_newer_release_migrated_is_named_so_and_not_offered_an_upgrade(
        database_url: str, tmp_path: Path) -> None:
    """Seen rolling back an upgrade (the old image kept for it, `kubectl rollout undo`) without restoring the backup:
    `db current` and `check` said "`qinglian db upgrade` migrates it", and `db upgrade`, `serve` and `worker` each
    ended in a traceback of Alembic's "Can't locate revision identified by '0099'"."""
    from storage.migrate import head_revisions

    newest = ", ".join(sorted(head_revisions()))
    _execute(database_url, "UPDATE alembic_version SET version_num = '0099'")  # what a newer release leaves
    env = {"QINGLIAN_DATA_DIR": str(tmp_path / "data"), "QINGLIAN_DATABASE_URL": database_url}
    said = (f"revision 0099 is newer than this version of Qinglian knows (its newest is {newest}): a newer release "
            "migrated this database. Run that release again, or restore the backup taken before its upgrade "
            "(docs/deploy.md, section 14)")

    current = _qinglian(env, "db", "current")
    assert (current.returncode, current.stdout.strip().endswith(said)) == (1, True), current.stdout
    check = _qinglian(env, "check")
    assert check.returncode == 1 and f"✗ database: {said}" in " ".join(check.stdout.split())
    for command in (["db", "upgrade"], ["worker"], ["serve", "--port", str(free_port())]):
        refused = _qinglian(env, *command)
        assert (refused.returncode, refused.stdout, refused.stderr.splitlines()) == (
            2, "", [f"qinglian: {masked_url(database_url)}: {said}"]), refused.stderr


@pytest.fixture(params=["sqlite", "postgres"])
def deployed_0049(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with deployed_at(request, tmp_path, "0049") as url:
        yield url


def test_a_migration_that_fails_says_so_and_where_the_database_stays(deployed_0049: str, tmp_path: Path) -> None:
    """Seen upgrading a database a DBA had patched by hand (a column added ahead of its migration): `db upgrade`
    said "cannot open the database at …: column "warned_kind" … already exists", and the troubleshooting table sends
    "cannot open the database" to the URL, the password and whether PostgreSQL runs. The migration failed, was rolled
    back, and the database stays at its revision: that is what the line now says, with the database's reason."""
    from storage.migrate import head_revisions

    _execute(deployed_0049, "ALTER TABLE cases ADD COLUMN warned_kind VARCHAR(8)")
    env = {"QINGLIAN_DATA_DIR": str(tmp_path / "data"), "QINGLIAN_DATABASE_URL": deployed_0049}

    failed = _qinglian(env, "db", "upgrade")

    assert (failed.returncode, failed.stdout, len(failed.stderr.splitlines())) == (2, "", 1), failed.stderr
    assert failed.stderr.startswith(
        f"qinglian: {masked_url(deployed_0049)}: migrating the database from revision 0049 to revision "
        f"{', '.join(sorted(head_revisions()))} failed and was rolled back: the database is still at revision 0049. "
        "The database said: ")
    assert "warned_kind" in failed.stderr and "cannot open" not in failed.stderr
    current = _qinglian(env, "db", "current")
    assert current.returncode == 1 and "revision 0049;" in current.stdout


@pytest.fixture(params=["sqlite", "postgres"])
def unmigrated(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, str]]:
    """A database nobody ran `qinglian db upgrade` on — a SQLite file not there yet, an empty PostgreSQL database —
    and how `db current` says so."""
    if request.param == "sqlite":
        path = tmp_path / "data" / "qinglian.db"
        yield f"sqlite+aiosqlite:///{path}", f"no database at {path} yet"
        return
    from tests.conftest import create_postgres_database, drop_postgres_database

    admin = request.getfixturevalue("postgres_server")
    name, url = create_postgres_database(admin)
    try:
        yield url, "the database has no schema yet"
    finally:
        drop_postgres_database(admin, name)


def test_commands_on_a_database_without_the_schema_say_where_it_stands(
        unmigrated: tuple[str, str], tmp_path: Path) -> None:
    """Seen setting up production (`staff add` before `db upgrade`, or QINGLIAN_DATABASE_URL naming another
    database): `staff add` said "cannot open the database at …: relation "staff_users" does not exist", `keys
    rotate` ended in a traceback, and `db backup` wrote an archive of 0 rows and succeeded — a nightly backup of
    nothing. Each now says where the database stands and what to do, in one line, and writes nothing."""
    from storage.migrate import head_revisions

    url, standing = unmigrated
    env = {"QINGLIAN_DATA_DIR": str(tmp_path / "data"), "QINGLIAN_DATABASE_URL": url}
    said = (f"qinglian: {masked_url(url)}: {standing}: `qinglian db upgrade` "
            + ("(or the first `qinglian serve`) " if url.startswith("sqlite") else "")
            + f"creates it at revision {', '.join(sorted(head_revisions()))}")
    for command in (["staff", "add", "alice", "--role", "admin", "--password", "a long enough password"],
                    ["staff", "list"], ["keys", "status"], ["keys", "rotate"]):
        refused = _qinglian(env, *command)
        assert (refused.returncode, refused.stderr.splitlines()) == (2, [said]), refused.stderr
    backup = _qinglian(env, "db", "backup", str(tmp_path / "nightly.qlbak"))
    assert (backup.returncode, backup.stderr.splitlines()) == (2, [
        f"{said}; nothing to back up. Run the backup with the service's settings (QINGLIAN_DATABASE_URL, "
        "QINGLIAN_DATA_DIR): a cron job or timer does not read them by itself"]), backup.stderr
    assert not (tmp_path / "nightly.qlbak").exists()
    assert not (tmp_path / "data" / "qinglian.db").exists()


def test_a_backup_before_an_upgrade_is_taken_of_the_older_schema(deployed_0049: str, tmp_path: Path) -> None:
    """The backup section 14 asks for before an upgrade is taken with the new version installed and the database
    not migrated yet: a schema behind this version's is backed up as it is."""
    env = {"QINGLIAN_DATA_DIR": str(tmp_path / "data"), "QINGLIAN_DATABASE_URL": deployed_0049}
    backup = _qinglian(env, "db", "backup", str(tmp_path / "before-upgrade.qlbak"))
    assert backup.returncode == 0, backup.stderr
    assert "(schema 0049)" in backup.stdout and (tmp_path / "before-upgrade.qlbak").exists()


@pytest.mark.parametrize("command", [["serve", "--port", "1"], ["worker"], ["check"]])
@pytest.mark.parametrize("environment", ["production", "development"])
def test_a_data_directory_that_cannot_be_written_is_one_line_before_anything_starts(
        tmp_path: Path, command: list[str], environment: str) -> None:
    """Seen deploying: a data directory the service cannot write (a read-only volume, one owned by another user, a
    file in its place) let `serve` migrate, start the app and end in a traceback of the first file it wrote
    (jieba's cache, the default model); in development, `check` itself ended in one (the generated secret key). The
    directory is now probed first and named with the system's reason. (A file in the directory's place stands for
    the others here: the tests run as root, whom a read-only mode does not stop.)"""
    in_the_way = tmp_path / "volume"
    in_the_way.write_text("not a directory", encoding="utf-8")
    env = {"QINGLIAN_DATA_DIR": str(in_the_way / "qinglian"), "QINGLIAN_ENVIRONMENT": environment}
    if environment == "production":
        env["QINGLIAN_SECRET_KEY"] = "ZCZC6UKxcwPhPOcM8n6l22BAie7ui-V-mGQbm5-O0qxCy3ds"
        env["QINGLIAN_DATABASE_URL"] = f"sqlite+aiosqlite:///{tmp_path / 'qinglian.db'}"
    result = _qinglian(env, *command)
    said = (f"the data directory {in_the_way / 'qinglian'} (QINGLIAN_DATA_DIR) cannot be written: Not a directory")
    assert "Traceback" not in result.stderr
    if command == ["check"]:  # with every other check (in development, the generated secret key's line too)
        assert result.returncode == 1 and f"✗ data directory: {said}" in " ".join(result.stdout.split())
        return
    assert result.returncode == 2 and result.stdout == "", result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"qinglian: {said}")


def _on_a_full_disk(env: dict[str, str], data_disk: Path, *command: str) -> subprocess.CompletedProcess[str]:
    """`qinglian <command>` with `data_disk` a filesystem with no space left: a 256 KiB tmpfs, filled to its last
    block, mounted in a mount namespace of the command's own (`unshare`: a user namespace makes the test's user root
    there, so this needs no privilege where the kernel allows unprivileged user namespaces, and mounts nothing on
    the machine). Skipped where no such namespace can be made."""
    if subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "true"], capture_output=True).returncode:
        pytest.skip("no user and mount namespace to mount a full filesystem in")
    data_disk.mkdir()
    fill = ('mount -t tmpfs -o size=256k qinglian-full "$1" || exit 99; cat /dev/zero > "$1/filler" 2>/dev/null; '
            'shift; exec "$@"')
    keys = {name: os.environ[name] for name in ("QINGLIAN_ENCRYPTION_KEY", "QINGLIAN_PSEUDONYM_KEY")}
    return subprocess.run(["unshare", "--user", "--map-root-user", "--mount", "sh", "-c", fill, "sh", str(data_disk),
                           sys.executable, "-m", "bot.cli", *command], cwd=REPO, capture_output=True, text=True,
                          timeout=120, env={"PATH": "/usr/bin:/bin", "COLUMNS": "200", **keys, **env})


@pytest.mark.parametrize("command", [["serve", "--port", "0"], ["worker"], ["check"]])
def test_a_full_disk_is_one_line_naming_it_before_anything_starts(tmp_path: Path, command: list[str]) -> None:
    """Seen deploying: with the data directory's disk full, the probe of `serve`, `worker` and `check` (an empty
    file, which a full disk still takes) passed; `serve` migrated, started and ended in an OSError traceback of the
    first file it wrote (the SQLite database, the default model). The probe now writes a block and syncs it."""
    data_disk = tmp_path / "disk"
    env = {"QINGLIAN_DATA_DIR": str(data_disk / "qinglian"), "QINGLIAN_ENVIRONMENT": "production",
           "QINGLIAN_SECRET_KEY": "ZCZC6UKxcwPhPOcM8n6l22BAie7ui-V-mGQbm5-O0qxCy3ds",
           "QINGLIAN_DATABASE_URL": f"sqlite+aiosqlite:///{data_disk / 'qinglian' / 'qinglian.db'}"}

    result = _on_a_full_disk(env, data_disk, *command)

    said = (f"the data directory {data_disk / 'qinglian'} (QINGLIAN_DATA_DIR) cannot be written: No space left on "
            "device")
    assert "Traceback" not in result.stderr, result.stderr
    if command == ["check"]:
        assert result.returncode == 1 and f"✗ data directory: {said}" in " ".join(result.stdout.split()), result.stdout
        return
    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    [line] = result.stderr.splitlines()
    assert line.startswith(f"qinglian: {said}")


def test_a_data_directory_with_less_free_space_than_the_minimum_stops_the_start(tmp_path: Path) -> None:
    """A disk with a few kilobytes left passes any write probe and fills up with the first evidence file or model:
    `serve` stops with one line when the data directory's disk has less free space than QINGLIAN_MIN_FREE_DISK_MB
    (here more than the test machine has), before it opens the database; `check` says so too."""
    minimum = shutil.disk_usage(tmp_path).free // 2**20 * 1024 + 1024
    env = {"QINGLIAN_DATA_DIR": str(tmp_path / "data"), "QINGLIAN_MIN_FREE_DISK_MB": str(minimum),
           "QINGLIAN_DATABASE_URL": "postgresql+asyncpg://q:pw@127.0.0.1:1/q"}  # not reached: the disk comes first
    said = f"the data directory {tmp_path / 'data'} (QINGLIAN_DATA_DIR) has "

    served = _qinglian(env, "serve", "--port", str(free_port()))

    assert (served.returncode, served.stdout) == (2, ""), served.stderr
    [line] = served.stderr.splitlines()
    assert line.startswith(f"qinglian: {said}") and f"MB free, less than the {minimum} MB" in line, line
    checked = _qinglian(env, "check")
    assert checked.returncode == 1 and f"✗ data directory: {said}" in " ".join(checked.stdout.split())


def test_a_port_in_use_is_one_line_before_anything_starts(tmp_path: Path) -> None:
    """Seen deploying (a second `serve`, or another program on 8000): `serve` migrated the database, loaded the
    model and started its background work, and only then did uvicorn say the address was in use. The port is now
    tried first: one line, the start's exit status, and nothing created."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    shutil.copytree(shared_models_dir(), data_dir / "models")  # without the fix, serve got as far as the model
    env = {"QINGLIAN_DATA_DIR": str(data_dir), "QINGLIAN_DATABASE_URL": f"sqlite+aiosqlite:///{data_dir / 'q.db'}"}
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        port = holder.getsockname()[1]

        result = _qinglian(env, "serve", "--host", "127.0.0.1", "--port", str(port))

    assert (result.returncode, result.stdout) == (2, ""), result.stderr
    assert result.stderr.splitlines() == [
        f"qinglian: cannot listen on 127.0.0.1:{port} (--host, --port): address already in use; stop what listens "
        f"there (`ss -ltnp 'sport = :{port}'` names it) or choose another --port"]
    assert not (data_dir / "q.db").exists()


def test_backup_and_restore_name_the_archive_by_its_absolute_path(tmp_path: Path,
                                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Seen reading a cron job's log: `qinglian db backup nightly.qlbak` said "written to nightly.qlbak", which does
    not say where the job's working directory was. Every line naming the archive names it absolutely."""
    from typer.testing import CliRunner

    from bot.cli import app

    _migrated_default(tmp_path, monkeypatch)
    (tmp_path / "cron").mkdir()
    monkeypatch.chdir(tmp_path / "cron")
    archive = (tmp_path / "cron" / "nightly.qlbak").resolve()
    runner = CliRunner()

    backup = runner.invoke(app, ["db", "backup", "nightly.qlbak"])
    assert backup.exit_code == 0, backup.output
    assert f" written to {archive}: " in backup.output
    again = runner.invoke(app, ["db", "backup", "nightly.qlbak"])
    assert (again.exit_code, again.output.startswith(f"qinglian: {archive} exists already;")) == (2, True)
    restore = runner.invoke(app, ["db", "restore", "nightly.qlbak", "--force"])
    assert restore.exit_code == 0, restore.output
    assert restore.output.startswith(f"restored {archive} into ")
    # the backup's own audit entry, counted in words an operator reads aloud: "1 row", not "1 rows"
    assert "  audit_log: 1 row\n" in restore.output and " 1 rows" not in restore.output, restore.output
    missing = runner.invoke(app, ["db", "restore", "missing.qlbak"])
    assert (missing.exit_code, missing.output) == (2, f"qinglian: no backup file at {archive.parent}/missing.qlbak\n")
