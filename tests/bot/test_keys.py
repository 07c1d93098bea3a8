"""The key ring from the settings, and `qinglian keys generate | status | rotate`."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from bot.cli import app
from bot.config import ConfigError, load_settings
from storage import actions, crypto
from storage.crypto import DataKey, KeyRing, derive, generate_key, parse_key
from storage.db import create_engine, create_sessionmaker
from storage.models import Case
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.factories import file_case

SECRET = "k" * 40
PRODUCTION_SECRET = "ZCZC6UKxcwPhPOcM8n6l22BAie7ui-V-mGQbm5-O0qxCy3ds"  # production refuses a guessable secret key


def test_without_an_encryption_key_the_key_is_derived_from_the_secret_key(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path, secret_key=SECRET, encryption_key=None, pseudonym_key=None)
    ring = settings.resolved_keyring()
    expected = DataKey(derive(SECRET.encode(), "qinglian field encryption key v1"))
    assert ring.current.key_id == expected.key_id and "QINGLIAN_SECRET_KEY" in ring.current.origin
    assert ring.pseudonym("telegram", "42") != load_settings(
        data_dir=tmp_path, secret_key="m" * 40, pseudonym_key=None).resolved_keyring().pseudonym("telegram", "42")
    # development without any secret: generated once in the data directory, the same after a restart
    first = load_settings(data_dir=tmp_path, secret_key=None, encryption_key=None).resolved_keyring()
    second = load_settings(data_dir=tmp_path, secret_key=None, encryption_key=None).resolved_keyring()
    assert first.current.key_id == second.current.key_id


def test_explicit_keys_old_keys_and_the_derived_key_all_decrypt(tmp_path: Path) -> None:
    current, old_one, old_two = generate_key(), generate_key(), generate_key()
    settings = load_settings(data_dir=tmp_path, secret_key=SECRET, encryption_key=current,
                             encryption_old_keys=f"{old_one}, {old_two}\n", pseudonym_key=TEST_PSEUDONYM_KEY)
    ring = settings.resolved_keyring()
    derived = load_settings(data_dir=tmp_path, secret_key=SECRET, encryption_key=None).resolved_keyring().current
    assert ring.current.key_id == crypto.key_id_of(parse_key(current))
    assert set(ring.keys) == {crypto.key_id_of(parse_key(k)) for k in (current, old_one, old_two)} | {derived.key_id}
    old_value = KeyRing(DataKey(parse_key(old_two)), pseudonym_key=b"p" * 32).encrypt("旧", purpose="x")
    assert ring.decrypt(old_value, purpose="x") == "旧"
    assert ring.pseudonym("web", "abc") == KeyRing(DataKey(b"z" * 32), pseudonym_key=parse_key(TEST_PSEUDONYM_KEY)
                                                   ).pseudonym("web", "abc")


def test_placeholder_and_malformed_keys_are_refused(tmp_path: Path) -> None:
    production = load_settings(environment="production", data_dir=tmp_path, secret_key=PRODUCTION_SECRET,
                               encryption_key="CHANGE_ME")
    with pytest.raises(ConfigError, match="QINGLIAN_ENCRYPTION_KEY is a placeholder"):
        production.resolved_keyring()
    development = load_settings(data_dir=tmp_path, secret_key=SECRET, encryption_key="change-me")
    assert "QINGLIAN_SECRET_KEY" in development.resolved_keyring().current.origin
    for bad, reason in (("not base64!!", "is not base64"), ("c2hvcnQ", "must be 32 bytes")):
        with pytest.raises(ConfigError, match=f"QINGLIAN_ENCRYPTION_KEY {reason}"):
            load_settings(data_dir=tmp_path, secret_key=SECRET, encryption_key=bad).resolved_keyring()
    with pytest.raises(ConfigError, match="QINGLIAN_ENCRYPTION_OLD_KEYS"):
        load_settings(data_dir=tmp_path, secret_key=SECRET, encryption_old_keys="abc").resolved_keyring()
    with pytest.raises(ConfigError, match="QINGLIAN_SECRET_KEY"):
        load_settings(environment="production", data_dir=tmp_path, secret_key="change-me",
                      encryption_key=generate_key()).resolved_keyring()


def _ring(key: str) -> KeyRing:
    return KeyRing(DataKey(parse_key(key)), pseudonym_key=parse_key(TEST_PSEUDONYM_KEY))


async def _seed(url: str, count: int, ring: KeyRing) -> None:
    engine = create_engine(url, ring)
    sessionmaker = create_sessionmaker(engine)
    try:
        for n in range(count):
            async with sessionmaker.begin() as session:
                await actions.load_conversation(session, "telegram", f"chat-{n}")
                case, _ = await file_case(
                    session, secret_key=SECRET.encode(), case_number_prefix="QL", year=2026, channel="telegram",
                    reporter_ref=f"chat-{n}", locale="zh", district=None, place="某处", occurred="今天",
                    description=f"窗口工作人员索要好处费 #{n}", anonymous=False, reporter_name="张三",
                    reporter_phone="13812345678", attachment_ids=[], queue="triage", label=None)
                await actions.reply_to_reporter(session, case, f"答复 #{n}", actor="staff:1")
    finally:
        await engine.dispose()


async def _descriptions(url: str, ring: KeyRing) -> list[str]:
    engine = create_engine(url, ring)
    try:
        async with create_sessionmaker(engine)() as session:
            return [c.description for c in (await session.execute(select(Case).order_by(Case.id))).scalars()]
    finally:
        await engine.dispose()


def test_keys_commands_rotate_to_a_new_key_and_report_the_status(database_url: str, tmp_path: Path) -> None:
    old, new = generate_key(), generate_key()
    old_id, new_id = (crypto.key_id_of(parse_key(k)) for k in (old, new))
    asyncio.run(_seed(database_url, 3, _ring(old)))
    runner = CliRunner()
    env = {"QINGLIAN_DATA_DIR": str(tmp_path), "QINGLIAN_DATABASE_URL": database_url, "QINGLIAN_SECRET_KEY": SECRET,
           "QINGLIAN_ENCRYPTION_KEY": old, "QINGLIAN_ENCRYPTION_OLD_KEYS": "", "COLUMNS": "200"}

    def run(*args: str, **overrides: str) -> Any:
        return runner.invoke(app, ["keys", *args], env={**env, **overrides})

    status = run("status")
    assert status.exit_code == 0, status.output
    assert re.search(rf"cases\.description\s+│\s+{old_id}\s+│\s+QINGLIAN_ENCRYPTION_KEY, current\s+│\s+3",
                     status.output)

    # the operator made the new key current and kept the old one readable, then rotates
    rotated = run("rotate", "--batch-size", "2", QINGLIAN_ENCRYPTION_KEY=new, QINGLIAN_ENCRYPTION_OLD_KEYS=old)
    assert rotated.exit_code == 0, rotated.output
    assert f"re-encrypted under key {new_id}" in rotated.output and "cases" in rotated.output
    status = run("status", QINGLIAN_ENCRYPTION_KEY=new)  # the old key removed
    assert status.exit_code == 0, status.output
    assert old_id not in status.output.split("key ")[0] and f"key {new_id} (QINGLIAN_ENCRYPTION_KEY, current)" in \
        status.output
    assert asyncio.run(_descriptions(database_url, _ring(new))) == [f"窗口工作人员索要好处费 #{n}" for n in range(3)]

    missing = run("status", QINGLIAN_ENCRYPTION_KEY=old)
    assert missing.exit_code == 1 and "missing from the key ring" in missing.output
    # `qinglian check` says the same before going live
    check = runner.invoke(app, ["check"], env={**env, "QINGLIAN_ENCRYPTION_KEY": old})
    assert check.exit_code == 1 and f"✗ encryption keys: values under keys missing from the key ring: {new_id}" \
        in check.output, check.output
    check = runner.invoke(app, ["check"], env={**env, "QINGLIAN_ENCRYPTION_KEY": new})
    assert re.search(rf"✓ encryption keys: current key {new_id}, \d+ values under it\n", check.output), check.output
    refused = run("rotate", QINGLIAN_ENCRYPTION_KEY=old)
    assert refused.exit_code == 1 and "not in the key ring" in refused.output

    # with the service stopped: a generated key, printed with what to set
    offline = run("rotate", "--generate", QINGLIAN_ENCRYPTION_KEY=new)
    assert offline.exit_code == 0, offline.output
    generated = re.search(r"QINGLIAN_ENCRYPTION_KEY=(\S{43})", offline.output)
    assert generated is not None
    assert run("status", QINGLIAN_ENCRYPTION_KEY=generated.group(1)).exit_code == 0


def test_keys_generate_prints_a_usable_key() -> None:
    result = CliRunner().invoke(app, ["keys", "generate"])
    assert result.exit_code == 0
    assert len(parse_key(result.output.strip())) == 32


def test_keys_status_and_rotate_cover_evidence_files(database_url: str, tmp_path: Path) -> None:
    from storage.evidence_files import key_id_of_file, purpose_of, read_decrypted, write_encrypted

    old, new = generate_key(), generate_key()
    old_id, new_id = (crypto.key_id_of(parse_key(k)) for k in (old, new))
    evidence = tmp_path / "evidence"
    photo = b"\xff\xd8\xff" + b"evidence bytes " * 10_000  # several chunks
    write_encrypted(_ring(old), evidence / "2026/11/a.jpg", photo, purpose=purpose_of("2026/11/a.jpg"))
    (evidence / "2026/11/legacy.pdf").write_bytes(b"%PDF-1.4 stored before files were encrypted")
    runner = CliRunner()
    env = {"QINGLIAN_DATA_DIR": str(tmp_path), "QINGLIAN_DATABASE_URL": database_url, "QINGLIAN_SECRET_KEY": SECRET,
           "QINGLIAN_ENCRYPTION_KEY": new, "QINGLIAN_ENCRYPTION_OLD_KEYS": old, "COLUMNS": "200"}
    status = runner.invoke(app, ["keys", "status"], env=env)
    assert re.search(rf"evidence files\s+│\s+{old_id}\s+│\s+QINGLIAN_ENCRYPTION_OLD_KEYS\s+│\s+1", status.output)
    assert re.search(r"evidence files\s+│\s+plaintext\s+│\s+not encrypted\s+│\s+1", status.output), status.output
    rotated = runner.invoke(app, ["keys", "rotate"], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert "2 evidence files re-encrypted" in rotated.output
    assert {key_id_of_file(path) for path in (evidence / "2026/11").iterdir()} == {new_id}
    assert b"".join(read_decrypted(_ring(new), evidence / "2026/11/a.jpg", purpose=purpose_of("2026/11/a.jpg"))) \
        == photo
    assert b"".join(read_decrypted(_ring(new), evidence / "2026/11/legacy.pdf",
                                   purpose=purpose_of("2026/11/legacy.pdf"))).startswith(b"%PDF-1.4")
