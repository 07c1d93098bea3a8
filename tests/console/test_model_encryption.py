"""Classifier models at rest: a model retrained from staff-labelled reports holds their words in its vocabulary,
so every model file is encrypted with the key ring; it loads after a restart and `qinglian keys rotate` /
`keys status` cover it, as they cover evidence files."""

from __future__ import annotations

import asyncio
import json
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from bot.classification import ClassifierService
from bot.cli import app
from console import training
from nlp.artifact import MODEL_FILE, purpose_of
from nlp.corpus import Example, load_seed_corpus
from nlp.errors import ModelKeysRequiredError
from nlp.labels import LABELS
from nlp.registry import ModelRegistry, train_and_register, unservable_reason
from storage import staff_actions
from storage.crypto import DataKey, KeyRing, generate_key, key_id_of, parse_key
from storage.db import Database
from storage.evidence_files import PLAINTEXT, SealedFiles, key_id_of_file
from storage.migrate import upgrade
from storage.models import StaffRole
from tests.conftest import TEST_PSEUDONYM_KEY, make_test_keyring
from tests.storage.test_training_data import labelled_case

SECRET = "k" * 40
# A place name no seed report mentions: its words and character n-grams enter the model's vocabulary.
DISTINCT = "鳉鲮鳊沟"
STAFF_TEXTS = [
    (f"{DISTINCT}卫生院的医生让我们先交三百元才肯开医保报销单据", "medical"),
    (f"{DISTINCT}医院住院部护士长收了红包才安排床位，医保结算还多收了钱", "medical"),
    (f"{DISTINCT}村卫生室医生收了钱才给开药，医保卡还被多刷", "medical"),
]


def _pieces(word: str) -> list[bytes]:
    """Every piece of two or more characters of `word`, UTF-8 (what a character n-gram or a jieba word of it
    could be)."""
    return sorted({word[i:j].encode() for i in range(len(word)) for j in range(i + 2, len(word) + 1)})


def _stored_bytes(models_dir: Path) -> dict[Path, bytes]:
    return {path: path.read_bytes() for path in models_dir.rglob("*") if path.is_file()}


def _ring(key: str) -> KeyRing:
    return KeyRing(DataKey(parse_key(key)), pseudonym_key=parse_key(TEST_PSEUDONYM_KEY))


@pytest.fixture
async def database_and_data(tmp_path: Path) -> AsyncIterator[tuple[Database, str, Path]]:
    url = f"sqlite+aiosqlite:///{tmp_path / 'qinglian.db'}"
    await asyncio.to_thread(upgrade, url, make_test_keyring())
    database = Database.connect(url, make_test_keyring())
    yield database, url, tmp_path / "data"
    await training.wait_for_runs()
    await database.dispose()


async def test_a_model_trained_from_staff_labels_holds_no_readable_word_and_survives_restart_and_rotation(
        database_and_data: tuple[Database, str, Path]) -> None:
    database, url, data_dir = database_and_data
    models_dir = data_dir / "models"
    async with database.sessionmaker.begin() as session:
        staff = await staff_actions.create_staff(session, username="admin", display_name="管理员",
                                                 role=StaffRole.ADMIN, password_hash="not-a-hash")
        for text, label in STAFF_TEXTS:
            await labelled_case(session, staff, text, label, predicted="slow_service", confidence=0.6)

    # the administrator retrains from the console: a separate training process saves the new version
    await training.start_training(database, data_dir)
    await training.wait_for_runs()
    status = training.training_status(data_dir)
    assert status["state"] == "succeeded", status
    version = status["version"]
    model_file = models_dir / version / MODEL_FILE

    # the model learnt the place name: its decrypted joblib bytes hold pieces of it …
    sealed = SealedFiles(make_test_keyring())
    plaintext = b"".join(sealed.read(model_file, purpose=purpose_of(version)))
    learnt = [piece for piece in _pieces(DISTINCT) if piece in plaintext]
    assert learnt, "the model's vocabulary should hold pieces of the staff-labelled reports"
    # … and no file under the models directory does
    for path, content in _stored_bytes(models_dir).items():
        assert not [piece.decode() for piece in learnt if piece in content], path
    assert key_id_of_file(model_file) == make_test_keyring().current.key_id

    # without the keys the model is refused, not mistaken for a damaged one (nothing retrains over it)
    with pytest.raises(ModelKeysRequiredError, match="encrypted"):
        ModelRegistry(models_dir).load(version)

    # a restart: a new serving process with the same keys serves it once promoted
    ModelRegistry(models_dir, sealed).promote(version, force=True)
    service = ClassifierService(data_dir, cipher=SealedFiles(make_test_keyring()))
    await service.ensure_ready()
    tag = service.classify(f"{DISTINCT}卫生院医生收红包才给开医保单据")
    assert tag is not None and tag.model_version == version and tag.label == "medical"
    assert ModelRegistry(models_dir).promoted().version == version  # type: ignore[union-attr]

    # `qinglian keys status` counts it, `keys rotate` re-encrypts it under the new key, and it still loads
    old = os.environ["QINGLIAN_ENCRYPTION_KEY"]
    new = generate_key()
    env = {"QINGLIAN_DATA_DIR": str(data_dir), "QINGLIAN_DATABASE_URL": url, "QINGLIAN_SECRET_KEY": SECRET,
           "QINGLIAN_ENCRYPTION_KEY": new, "QINGLIAN_ENCRYPTION_OLD_KEYS": old, "COLUMNS": "200"}
    runner = CliRunner()
    models = len(ModelRegistry(models_dir).artifact_files())
    result = await asyncio.to_thread(runner.invoke, app, ["keys", "status"], env=env)
    assert result.exit_code == 0, (result.output, result.exception)
    status_output = result.output
    assert re.search(rf"classifier model files\s+│\s+{key_id_of(parse_key(old))}\s+│\s+QINGLIAN_ENCRYPTION_OLD_KEYS"
                     rf"\s+│\s+{models}", status_output), status_output
    rotated = await asyncio.to_thread(runner.invoke, app, ["keys", "rotate"], env=env)
    assert rotated.exit_code == 0, rotated.output
    assert f"{models} classifier model files re-encrypted" in rotated.output
    new_id = key_id_of(parse_key(new))
    assert {key_id_of_file(path) for path, _ in ModelRegistry(models_dir).artifact_files()} == {new_id}
    for path, content in _stored_bytes(models_dir).items():
        assert not [piece.decode() for piece in learnt if piece in content], path
    after = ClassifierService(data_dir, cipher=SealedFiles(_ring(new)))  # the old key is no longer needed
    await after.ensure_ready()
    again = after.classify(f"{DISTINCT}卫生院医生收红包才给开医保单据")
    assert again is not None and again.model_version == version and again.top == tag.top
    # the administrator's command line reads it with the same keys
    classified = await asyncio.to_thread(runner.invoke, app, ["classify", "--model", version],
                                         input=f"{DISTINCT}卫生院医生收红包才给开医保单据\n", env=env)
    assert classified.exit_code == 0, classified.output
    assert json.loads(classified.stdout.splitlines()[0])["label"] == "medical"
    status_output = (await asyncio.to_thread(runner.invoke, app, ["keys", "status"],
                                             env={**env, "QINGLIAN_ENCRYPTION_OLD_KEYS": ""})).output
    assert re.search(rf"classifier model files\s+│\s+{new_id}\s+│\s+QINGLIAN_ENCRYPTION_KEY, current\s+│\s+{models}",
                     status_output), status_output


def test_a_model_saved_before_encryption_still_loads_and_rotation_encrypts_it(tmp_path: Path) -> None:
    examples: list[Example] = []
    for label in LABELS:
        examples += [e for e in load_seed_corpus("train") if e.label == label][:12]
    models_dir = tmp_path / "data" / "models"
    legacy = ModelRegistry(models_dir)  # as versions before encryption saved it: a plain joblib file
    info = train_and_register(legacy, examples, source="small")
    model_file = info.path / MODEL_FILE
    assert key_id_of_file(model_file) == PLAINTEXT
    text = "医院收红包才安排床位"
    expected = legacy.load(info.version).classify(text).top

    ring = make_test_keyring()
    sealed = ModelRegistry(models_dir, SealedFiles(ring))
    assert sealed.load(info.version).classify(text).top == expected
    database_url = f"sqlite+aiosqlite:///{tmp_path / 'q.db'}"
    env = {"QINGLIAN_DATA_DIR": str(tmp_path / "data"), "QINGLIAN_DATABASE_URL": database_url,
           "QINGLIAN_SECRET_KEY": SECRET, "QINGLIAN_ENCRYPTION_KEY": os.environ["QINGLIAN_ENCRYPTION_KEY"],
           "QINGLIAN_ENCRYPTION_OLD_KEYS": "", "COLUMNS": "200"}
    upgrade(env["QINGLIAN_DATABASE_URL"], ring)
    runner = CliRunner()
    status = runner.invoke(app, ["keys", "status"], env=env).output
    assert re.search(r"classifier model files\s+│\s+plaintext\s+│\s+not encrypted\s+│\s+1", status), status
    rotated = runner.invoke(app, ["keys", "rotate"], env=env)
    assert rotated.exit_code == 0 and "1 classifier model files re-encrypted" in rotated.output, rotated.output
    assert key_id_of_file(model_file) == ring.current.key_id
    assert sealed.load(info.version).classify(text).top == expected
    # an altered file is refused before anything is unpickled (and the service would train a new default model)
    damaged = bytearray(model_file.read_bytes())
    damaged[-1] ^= 1
    model_file.write_bytes(bytes(damaged))
    reason = unservable_reason(sealed.get(info.version), sealed.cipher)
    assert reason is not None and "cannot decrypt" in reason
