"""Field encryption at rest and keyed pseudonyms (storage/crypto.py): keys as the settings give them, the stored
format an independent AES-GCM / AES-SIV reads and writes, which key of the ring encrypts and which decrypt, the
refusal of a value that was altered or is under a key the ring lacks (naming the settings that add keys), the
pseudonyms and search hashes that stay when the encryption key is rotated, and the column types on an engine with,
without or with another key ring — on SQLite and the PostgreSQL on 127.0.0.1.

(A whole report leaving no plaintext behind, tampering in the database and rotation of a database:
test_encryption.py; keys from the settings: tests/bot/test_keys.py.)"""

from __future__ import annotations

import base64
import hashlib
import hmac
import pickle
from typing import Any

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from sqlalchemy import select, text
from sqlalchemy.exc import StatementError

from storage import outbox
from storage.crypto import (
    CryptoError,
    DataKey,
    DecryptionError,
    KeyRing,
    KeysNotInstalled,
    derive,
    generate_key,
    header,
    key_id_of,
    key_id_of_value,
    parse_key,
    session_keyring,
)
from storage.db import Database, create_engine, create_sessionmaker
from storage.models import Case, OutboxMessage, ProcessedUpdate
from tests.conftest import TEST_PSEUDONYM_KEY
from tests.factories import file_case

SECRET = bytes(range(32))
SECRET_ID = "2a8734e3"  # the first 8 hex digits of HMAC-SHA256(SECRET, "qinglian key id")
OTHER = bytes(range(100, 132))
THIRD = bytes(range(200, 232))
PSEUDONYM_KEY = bytes(range(32, 64))
HOW_TO = "(`qinglian keys generate` prints a valid key)"


def _hkdf(secret: bytes, info: str, length: int = 32) -> bytes:
    """RFC 5869 HKDF-SHA256 with the salt "qinglian", written out with the standard library."""
    prk = hmac.new(b"qinglian", secret, hashlib.sha256).digest()
    okm, block, counter = b"", b"", 1
    while len(okm) < length:
        block = hmac.new(prk, block + info.encode() + bytes([counter]), hashlib.sha256).digest()
        okm, counter = okm + block, counter + 1
    return okm[:length]


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _ring(current: bytes = SECRET, *older: bytes, pseudonym_key: bytes = PSEUDONYM_KEY) -> KeyRing:
    return KeyRing(DataKey(current), [DataKey(key) for key in older], pseudonym_key=pseudonym_key)


# --- keys as the settings give them -------------------------------------------------------------------


def test_a_key_is_read_from_either_base64_alphabet_with_or_without_padding_and_surrounding_space() -> None:
    raw = bytes([0xFB, 0xFF, 0xBF] * 10 + [0xFE, 0xFF])  # its base64 has "+" and "/" (URL-safe: "-" and "_")
    for written in ("+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+//v8=", "+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+/+//v8",
                    "-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-__v8", "  -_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-_-__v8=\n"):
        assert parse_key(written) == raw, written


@pytest.mark.parametrize(("written", "problem"), [
    ("not base64!!", f"is not base64 {HOW_TO}"),
    ("abc def ghi", f"is not base64 {HOW_TO}"),
    ("c2hvcnQ", f"must be 32 bytes in base64, this is 5 {HOW_TO}"),
    (_b64(b"k" * 16), f"must be 32 bytes in base64, this is 16 {HOW_TO}"),
    (_b64(b"k" * 33), f"must be 32 bytes in base64, this is 33 {HOW_TO}"),
    ("", f"must be 32 bytes in base64, this is 0 {HOW_TO}"),
])
def test_a_key_that_is_not_base64_or_not_32_bytes_is_refused_saying_how_to_get_a_valid_one(
        written: str, problem: str) -> None:
    with pytest.raises(CryptoError) as refused:
        parse_key(written)
    assert str(refused.value) == problem


def test_a_generated_key_is_43_url_safe_characters_of_32_random_bytes() -> None:
    first, second = generate_key(), generate_key()
    assert len(first) == len(second) == 43 and first != second
    assert set(first) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")
    assert len(parse_key(first)) == 32


def test_a_key_is_named_by_an_id_that_does_not_reveal_it_and_keys_are_derived_per_purpose() -> None:
    assert key_id_of(SECRET) == DataKey(SECRET).key_id == SECRET_ID
    assert key_id_of(OTHER) != SECRET_ID
    purpose = "qinglian field encryption aes-256-gcm"
    assert derive(SECRET, purpose) == _hkdf(SECRET, purpose)
    assert derive(SECRET, "a purpose", 64) == _hkdf(SECRET, "a purpose", 64)
    assert derive(SECRET, "a purpose") != derive(SECRET, "another purpose")


def test_a_keys_secret_never_shows_in_its_printed_form() -> None:
    key = DataKey(SECRET, "QINGLIAN_ENCRYPTION_KEY")
    shown = repr(key)
    assert "QINGLIAN_ENCRYPTION_KEY" in shown
    assert repr(SECRET) not in shown and _b64(SECRET) not in shown and SECRET.hex() not in shown


# --- the stored format ------------------------------------------------------------------------------


def test_a_value_is_stored_as_the_documented_aes_gcm_format_an_independent_implementation_reads_and_writes() -> None:
    ring = _ring()
    stored = ring.encrypt("abc", purpose="cases.description")
    assert stored.startswith(f"g1.{SECRET_ID}.") and header(SECRET_ID) == f"g1.{SECRET_ID}."
    body = stored[len("g1.2a8734e3."):]
    assert len(body) == 42 and "=" not in body  # 12 nonce + 3 text + 16 tag = 31 bytes, unpadded base64url
    raw = base64.urlsafe_b64decode(body + "==")
    gcm = AESGCM(_hkdf(SECRET, "qinglian field encryption aes-256-gcm"))
    assert gcm.decrypt(raw[:12], raw[12:], f"g1.{SECRET_ID}.cases.description".encode()) == b"abc"
    # a value written elsewhere in the same format (a fixed nonce here) reads back
    nonce = bytes(12)
    foreign = f"g1.{SECRET_ID}." + _b64(nonce + gcm.encrypt(nonce, "举报内容".encode(),
                                                             f"g1.{SECRET_ID}.cases.description".encode()))
    assert ring.decrypt(foreign, purpose="cases.description") == "举报内容"


def test_a_deterministic_value_is_the_same_aes_siv_ciphertext_as_values_stored_before() -> None:
    ring = _ring()
    stored = ring.encrypt("abc", purpose="outbox.recipient", deterministic=True)
    assert stored == "s1.2a8734e3.FkFIeL7OE4ohLPiy25i_Cew2iw" == header(SECRET_ID, deterministic=True) + \
        "FkFIeL7OE4ohLPiy25i_Cew2iw"
    siv = AESSIV(_hkdf(SECRET, "qinglian field encryption aes-256-siv", 64))
    raw = base64.urlsafe_b64decode("FkFIeL7OE4ohLPiy25i_Cew2iw==")
    assert siv.decrypt(raw, [f"s1.{SECRET_ID}.outbox.recipient".encode()]) == b"abc"
    assert ring.decrypt(stored, purpose="outbox.recipient") == "abc"
    # the same address under another column's purpose is another ciphertext
    assert ring.encrypt("abc", purpose="cases.reporter_ref", deterministic=True) != stored


@pytest.mark.parametrize(("stored", "key_id"), [
    ("g1.2a8734e3.AAAA", "2a8734e3"),
    ("s1.0123abcd.x", "0123abcd"),
    ("g1.2a8734e3.", None),  # a header with nothing under it
    ("g1.2a8734e3", None),
    ("x1.2a8734e3.AAAA", None),
    ("g1.2a8734e.AAAAA", None),  # the key id one digit short
    ("G1.2a8734e3.AAAA", None),
    ("岳麓区政务服务中心", None),
    ("", None),
])
def test_the_key_id_of_a_stored_value_comes_from_a_well_formed_header_only(stored: str, key_id: str | None) -> None:
    assert key_id_of_value(stored) == key_id


# --- which key encrypts, which decrypt ----------------------------------------------------------------


def test_the_current_key_encrypts_and_every_key_of_the_ring_decrypts() -> None:
    old_value = _ring(OTHER).encrypt("旧密钥下的内容", purpose="cases.place")
    ring = _ring(SECRET, OTHER)
    assert set(ring.keys) == {SECRET_ID, key_id_of(OTHER)} and ring.current.key_id == SECRET_ID
    assert key_id_of_value(ring.encrypt("新内容", purpose="cases.place")) == SECRET_ID
    assert ring.decrypt(old_value, purpose="cases.place") == "旧密钥下的内容"
    # a key added for reading does not take over encryption
    third_value = _ring(THIRD).encrypt("第三把", purpose="cases.place")
    widened = ring.with_key(DataKey(THIRD))
    assert widened.decrypt(third_value, purpose="cases.place") == "第三把"
    assert key_id_of_value(widened.encrypt("x", purpose="cases.place")) == SECRET_ID
    # a key taken out no longer reads its values
    narrowed = ring.without([key_id_of(OTHER)])
    assert set(narrowed.keys) == {SECRET_ID}
    with pytest.raises(DecryptionError, match=f"under key {key_id_of(OTHER)}, which is not in the key ring"):
        narrowed.decrypt(old_value, purpose="cases.place")


def test_a_key_given_twice_is_one_key_of_the_ring_and_the_current_one_keeps_its_origin() -> None:
    ring = KeyRing(DataKey(SECRET, "QINGLIAN_ENCRYPTION_KEY"),
                   [DataKey(SECRET, "QINGLIAN_ENCRYPTION_OLD_KEYS"), DataKey(OTHER, "QINGLIAN_ENCRYPTION_OLD_KEYS"),
                    DataKey(OTHER, "derived from QINGLIAN_SECRET_KEY")], pseudonym_key=PSEUDONYM_KEY)
    assert {key_id: key.origin for key_id, key in ring.keys.items()} == {
        SECRET_ID: "QINGLIAN_ENCRYPTION_KEY", key_id_of(OTHER): "QINGLIAN_ENCRYPTION_OLD_KEYS"}


def test_a_value_under_a_key_no_longer_in_the_ring_is_refused_naming_the_settings_that_add_keys() -> None:
    stored = _ring(OTHER).encrypt("13912345678", purpose="cases.reporter_phone")
    with pytest.raises(DecryptionError) as refused:
        _ring(SECRET).decrypt(stored, purpose="cases.reporter_phone")
    assert str(refused.value) == (
        f"a value of cases.reporter_phone is encrypted under key {key_id_of(OTHER)}, which is not in the key ring "
        "(QINGLIAN_ENCRYPTION_KEY / QINGLIAN_ENCRYPTION_OLD_KEYS)")


def test_a_changed_header_or_a_damaged_body_is_refused_as_altered() -> None:
    ring = _ring()
    random_value = ring.encrypt("窗口人员索要好处费", purpose="cases.description")
    fixed_value = ring.encrypt("tg-4242", purpose="cases.description", deterministic=True)
    altered = f"a value of cases.description failed authentication under key {SECRET_ID}: it was altered or damaged"
    for damaged in ("s1" + random_value[2:],  # the mode in the header changed
                    "g1" + fixed_value[2:],
                    random_value[:-1],  # a character cut off: a body base64 cannot decode
                    random_value[:-2],
                    random_value[:30],  # shorter than a nonce and a tag
                    fixed_value[:20],
                    random_value[:12] + "!!!!" + random_value[16:]):
        with pytest.raises(DecryptionError) as refused:
            ring.decrypt(damaged, purpose="cases.description")
        assert str(refused.value) == altered, damaged
    with pytest.raises(DecryptionError) as refused:
        ring.decrypt(random_value[:12], purpose="cases.description")
    assert str(refused.value) == "a value of cases.description is not encrypted or not in a known format"


def test_reencrypting_moves_a_value_under_the_target_key_and_refuses_a_damaged_one() -> None:
    ring = _ring(SECRET, OTHER)
    old = _ring(OTHER).encrypt("tg-5550123456", purpose="outbox.recipient", deterministic=True)
    moved = ring.reencrypt(old, purpose="outbox.recipient", deterministic=True)  # default: the current key
    assert moved == ring.encrypt("tg-5550123456", purpose="outbox.recipient", deterministic=True)
    assert key_id_of_value(moved) == SECRET_ID and _ring(SECRET).decrypt(moved, purpose="outbox.recipient") == \
        "tg-5550123456"
    back = ring.reencrypt(moved, purpose="outbox.recipient", deterministic=False, key=DataKey(OTHER))
    assert back.startswith(f"g1.{key_id_of(OTHER)}.") and _ring(OTHER).decrypt(back, purpose="outbox.recipient") \
        == "tg-5550123456"
    with pytest.raises(DecryptionError, match=r"outbox\.recipient failed authentication"):
        ring.reencrypt(old[:-3] + ("AAA" if old[-3:] != "AAA" else "BBB"), purpose="outbox.recipient",
                       deterministic=True)


# --- pseudonyms and keyed hashes ---------------------------------------------------------------------


def test_pseudonyms_and_search_hashes_depend_on_the_pseudonym_key_only_not_on_the_encryption_key() -> None:
    ring = _ring(SECRET)
    rotated = _ring(OTHER, SECRET)
    assert ring.pseudonym("telegram", "4242") == rotated.pseudonym("telegram", "4242") == hmac.new(
        PSEUDONYM_KEY, b"telegram:4242", hashlib.sha256).hexdigest()
    assert ring.pseudonym("wechat", "4242") != ring.pseudonym("telegram", "4242")
    search_key = _hkdf(PSEUDONYM_KEY, "qinglian search terms v1")
    expected = int.from_bytes(hmac.new(search_key, "红包".encode(), hashlib.sha256).digest()[:8], "big") >> 1
    assert ring.search_hash("红包") == rotated.search_hash("红包") == expected == 907001884778493110
    assert ring.similarity_key == rotated.similarity_key == _hkdf(PSEUDONYM_KEY, "qinglian similarity v1")
    other_pseudonyms = _ring(SECRET, pseudonym_key=THIRD)
    assert other_pseudonyms.pseudonym("telegram", "4242") != ring.pseudonym("telegram", "4242")
    assert other_pseudonyms.search_hash("红包") != ring.search_hash("红包")


def test_a_search_hash_fits_a_signed_64_bit_column() -> None:
    ring = _ring()
    hashes = {ring.search_hash(term) for term in ("红包", "窗口", "好处费", "", "a" * 500)}
    assert len(hashes) == 5 and all(0 <= value < 2 ** 63 for value in hashes)


def test_a_ring_handed_to_another_process_after_use_encrypts_decrypts_and_hashes_the_same() -> None:
    ring = _ring(SECRET, OTHER)
    old_value = _ring(OTHER).encrypt("旧", purpose="x")
    fixed = ring.encrypt("tg-1", purpose="outbox.recipient", deterministic=True)  # ciphers built and cached
    ring.decrypt(old_value, purpose="x")
    copy = pickle.loads(pickle.dumps(ring))
    assert copy.current.key_id == SECRET_ID and set(copy.keys) == set(ring.keys)
    assert copy.decrypt(old_value, purpose="x") == "旧"
    assert copy.encrypt("tg-1", purpose="outbox.recipient", deterministic=True) == fixed
    assert copy.pseudonym("web", "abc") == ring.pseudonym("web", "abc")
    assert copy.search_hash("红包") == ring.search_hash("红包") and copy.similarity_key == ring.similarity_key


# --- the column types on an engine --------------------------------------------------------------------


async def test_encrypted_columns_hold_ciphertext_and_the_service_reads_plaintext_and_finds_by_address(
        sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        for recipient, words in (("tg-7", "您好"), ("tg-7", "再见"), ("tg-8", "您好")):
            await outbox.enqueue(session, channel="telegram", recipient=recipient, payload={"text": words})
        session.add(ProcessedUpdate(channel="wechat", update_key="oPENID-resident:1732000000:subscribe:"))
        session.add(ProcessedUpdate(channel="wechat", update_key="ab" * 32))  # a pseudonym already: kept as it is
    async with sessionmaker() as session:
        ring = session_keyring(session)
        raw = (await session.execute(text("SELECT recipient, payload FROM outbox ORDER BY id"))).all()
        found = (await session.execute(select(OutboxMessage.payload).where(OutboxMessage.recipient == "tg-7")
                                       .order_by(OutboxMessage.id))).scalars().all()
        keys = set((await session.execute(text("SELECT update_key FROM processed_updates"))).scalars())
        by_event = await session.scalar(select(ProcessedUpdate.update_key).where(
            ProcessedUpdate.update_key == "oPENID-resident:1732000000:subscribe:"))
    assert ring.current.key_id == key_id_of_value(raw[0].recipient)
    assert raw[0].recipient == raw[1].recipient != raw[2].recipient and raw[0].recipient.startswith("s1.")
    assert all(row.payload.startswith("g1.") and "您好" not in row.payload for row in raw)
    assert raw[0].payload != raw[2].payload  # the same payload, a fresh nonce each time
    assert found == [{"text": "您好"}, {"text": "再见"}]
    pseudonym = ring.pseudonym("update", "oPENID-resident:1732000000:subscribe:")
    assert keys == {pseudonym, "ab" * 32} and by_event == pseudonym
    assert pseudonym == hmac.new(parse_key(TEST_PSEUDONYM_KEY), b"update:oPENID-resident:1732000000:subscribe:",
                                 hashlib.sha256).hexdigest()


async def test_each_engine_reads_with_its_own_key_ring_and_one_without_a_ring_refuses_to_touch_encrypted_columns(
        database: Database, sessionmaker: Any) -> None:
    async with sessionmaker.begin() as session:
        case, _ = await file_case(session, description="岳麓区窗口人员索要好处费。")
    foreign = create_engine(database.url, _ring(OTHER))
    bare = create_engine(database.url, None)
    try:
        with pytest.raises(DecryptionError, match=r"a value of cases\.\w+ is encrypted under key \w{8}, which is not"):
            async with create_sessionmaker(foreign)() as session:
                await session.get(Case, case.id)
        async with sessionmaker() as session:  # the application's engine, in the same process, still reads it
            stored = await session.get(Case, case.id)
            assert stored is not None and stored.description == "岳麓区窗口人员索要好处费。"
        with pytest.raises(KeysNotInstalled) as refused:
            async with create_sessionmaker(bare)() as session:
                await session.get(Case, case.id)
        assert str(refused.value) == ("the engine has no encryption key ring: create it with storage.db "
                                      "(Database.connect / create_engine with a keyring)")
        with pytest.raises(StatementError) as writing:
            async with create_sessionmaker(bare).begin() as session:
                await outbox.enqueue(session, channel="telegram", recipient="tg-9", payload={"text": "x"})
        assert isinstance(writing.value.orig, KeysNotInstalled)
        async with sessionmaker() as session:  # nothing was written in plaintext instead
            assert await session.scalar(select(OutboxMessage.id).where(OutboxMessage.recipient == "tg-9")) is None
    finally:
        await foreign.dispose()
        await bare.dispose()
