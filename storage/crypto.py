"""Field encryption at rest and keyed pseudonyms of channel user ids.

What a reporter gives away — the report text, their name and phone, the chat id or openid that reaches
them — is stored only encrypted with authenticated encryption. A stored value is text:

    g1.<key id>.<base64url(nonce ‖ ciphertext ‖ tag)>   AES-256-GCM, random 96-bit nonce
    s1.<key id>.<base64url(tag ‖ ciphertext)>           AES-256-SIV, deterministic

The key id is the first 8 hex digits of HMAC-SHA256(key, "qinglian key id"): it names the key without
revealing it, so several keys can coexist in the key ring while `qinglian keys rotate` moves the rows from
the old keys to the current one. The header and the column (`cases.description`) are the associated data:
a value moved to another column, or a changed header or byte, fails to decrypt (`DecryptionError`).

Deterministic encryption is used only where SQL compares stored addresses with each other (the outbox
keeps each recipient's messages in order); every other field gets a fresh nonce per write.

Lookups never see a user id: `KeyRing.pseudonym(channel, user_id)` is HMAC-SHA256 of `channel:user_id`
under a separate pseudonym key that does not change when the encryption key is rotated.

The key ring travels with the engine it protects: the application builds it from the settings and
binds it to each engine it creates (`bind_keyring`); the column types below find it on the dialect of
the connection that runs the statement, so two engines in one process can hold different keys.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM, AESSIV
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from sqlalchemy import String, Text, TypeDecorator
from sqlalchemy.engine import Dialect

KEY_BYTES = 32
NONCE_BYTES = 12
RANDOM = "g1"  # AES-256-GCM
DETERMINISTIC = "s1"  # AES-256-SIV
HEADER_CHARS = len("g1.01234567.")
PSEUDONYM_CHARS = 64


class CryptoError(Exception):
    """Encryption keys are missing or wrong; the message is one line for the operator."""


class KeysNotInstalled(CryptoError):
    pass


class DecryptionError(CryptoError):
    """A stored value is not readable with the key ring: tampered, truncated, or under an unknown key."""


def derive(secret: bytes, purpose: str, length: int = KEY_BYTES) -> bytes:
    """HKDF-SHA256 of a secret for one purpose."""
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=b"qinglian", info=purpose.encode()).derive(secret)


def key_id_of(secret: bytes) -> str:
    return hmac.new(secret, b"qinglian key id", hashlib.sha256).hexdigest()[:8]


def generate_key() -> str:
    """A new random key in the form the settings take: 32 bytes, base64url without padding (43 characters)."""
    return base64.urlsafe_b64encode(os.urandom(KEY_BYTES)).rstrip(b"=").decode("ascii")


def parse_key(text: str) -> bytes:
    """A key from the settings: 32 bytes in base64 (standard or URL-safe alphabet, padding optional)."""
    value = text.strip()
    try:
        raw = base64.b64decode(value.replace("-", "+").replace("_", "/") + "=" * (-len(value) % 4), validate=True)
    except (binascii.Error, ValueError):
        raise CryptoError("is not base64 (`qinglian keys generate` prints a valid key)") from None
    if len(raw) != KEY_BYTES:
        raise CryptoError(f"must be {KEY_BYTES} bytes in base64, this is {len(raw)} "
                          "(`qinglian keys generate` prints a valid key)")
    return raw


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


@dataclass(frozen=True)
class DataKey:
    """One encryption key of the ring; `origin` says where it came from, for `qinglian keys status`."""

    secret: bytes = field(repr=False)
    origin: str = ""

    def __reduce__(self) -> tuple[Any, ...]:
        # the cached ciphers are not picklable; a process handed the ring (a training process) rebuilds them
        return DataKey, (self.secret, self.origin)

    @cached_property
    def key_id(self) -> str:
        return key_id_of(self.secret)

    @cached_property
    def gcm(self) -> AESGCM:
        return AESGCM(derive(self.secret, "qinglian field encryption aes-256-gcm"))

    @cached_property
    def siv(self) -> AESSIV:
        return AESSIV(derive(self.secret, "qinglian field encryption aes-256-siv", 2 * KEY_BYTES))


def header(key_id: str, *, deterministic: bool = False) -> str:
    return f"{DETERMINISTIC if deterministic else RANDOM}.{key_id}."


def key_id_of_value(stored: str) -> str | None:
    """The key id a stored value is encrypted under; None for anything not in the format (plaintext)."""
    if len(stored) > HEADER_CHARS and stored[:3] in (f"{RANDOM}.", f"{DETERMINISTIC}.") and stored[11] == ".":
        return stored[3:11]
    return None


class KeyRing:
    """The current key (new values), older keys (still readable) and the pseudonym key."""

    def __init__(self, current: DataKey, older: Iterable[DataKey] = (), *, pseudonym_key: bytes) -> None:
        self.current = current
        self.keys: dict[str, DataKey] = {}
        for key in (current, *older):
            self.keys.setdefault(key.key_id, key)
        self._pseudonym_key = pseudonym_key
        self._search_key = derive(pseudonym_key, "qinglian search terms v1")
        self.similarity_key = derive(pseudonym_key, "qinglian similarity v1")

    def __reduce__(self) -> tuple[Any, ...]:
        older = [key for key in self.keys.values() if key is not self.current]
        return _restore_keyring, (self.current, older, self._pseudonym_key)

    def with_key(self, key: DataKey) -> KeyRing:
        """The same ring, able to decrypt under `key` too."""
        return KeyRing(self.current, [*self.keys.values(), key], pseudonym_key=self._pseudonym_key)

    def encrypting_with(self, key: DataKey) -> KeyRing:
        """The same ring, encrypting under `key` from now on (a rotation's target), still reading every key."""
        return KeyRing(key, [*self.keys.values()], pseudonym_key=self._pseudonym_key)

    def without(self, key_ids: Iterable[str]) -> KeyRing:
        dropped = set(key_ids)
        return KeyRing(self.current, [k for k in self.keys.values() if k.key_id not in dropped],
                       pseudonym_key=self._pseudonym_key)

    def encrypt(self, plaintext: str, *, purpose: str, deterministic: bool = False,
                key: DataKey | None = None) -> str:
        key = key or self.current
        head = header(key.key_id, deterministic=deterministic)
        associated = f"{head}{purpose}".encode()
        data = plaintext.encode("utf-8")
        if deterministic:
            return head + _b64encode(key.siv.encrypt(data, [associated]))
        nonce = os.urandom(NONCE_BYTES)
        return head + _b64encode(nonce + key.gcm.encrypt(nonce, data, associated))

    def decrypt(self, stored: str, *, purpose: str) -> str:
        key_id = key_id_of_value(stored)
        if key_id is None:
            raise DecryptionError(f"a value of {purpose} is not encrypted or not in a known format")
        key = self.keys.get(key_id)
        if key is None:
            raise DecryptionError(f"a value of {purpose} is encrypted under key {key_id}, which is not in the "
                                  "key ring (QINGLIAN_ENCRYPTION_KEY / QINGLIAN_ENCRYPTION_OLD_KEYS)")
        head, body = stored[:HEADER_CHARS], stored[HEADER_CHARS:]
        associated = f"{head}{purpose}".encode()
        try:
            raw = _b64decode(body)
            if head.startswith(DETERMINISTIC):
                data = key.siv.decrypt(raw, [associated])
            else:
                if len(raw) < NONCE_BYTES + 16:
                    raise InvalidTag
                data = key.gcm.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:], associated)
            return data.decode("utf-8")
        except (InvalidTag, ValueError, binascii.Error):
            raise DecryptionError(f"a value of {purpose} failed authentication under key {key_id}: "
                                  "it was altered or damaged") from None

    def reencrypt(self, stored: str, *, purpose: str, deterministic: bool, key: DataKey | None = None) -> str:
        """`stored` under `key` (default: the current key). A value that does not authenticate is refused,
        never re-encrypted as if it were good."""
        plaintext = self.decrypt(stored, purpose=purpose)
        return self.encrypt(plaintext, purpose=purpose, deterministic=deterministic, key=key or self.current)

    def search_hash(self, term: str) -> int:
        """The keyed hash a search term is indexed by: 63 bits of HMAC-SHA256 under a key derived from the
        pseudonym key (never rotated), so the index holds no word a reader could look up without the key."""
        digest = hmac.new(self._search_key, term.encode(), hashlib.sha256).digest()
        return int.from_bytes(digest[:8], "big") >> 1

    def pseudonym(self, channel: str, user_id: str) -> str:
        """The keyed pseudonym under which lookups find a channel user: 64 hex digits."""
        return hmac.new(self._pseudonym_key, f"{channel}:{user_id}".encode(), hashlib.sha256).hexdigest()


def _restore_keyring(current: DataKey, older: list[DataKey], pseudonym_key: bytes) -> KeyRing:
    return KeyRing(current, older, pseudonym_key=pseudonym_key)


_KEYRING_ATTRIBUTE = "qinglian_keyring"


def bind_keyring(engine: Any, ring: KeyRing) -> None:
    """Give an engine (sync or async) the key ring its encrypted columns use."""
    sync_engine = getattr(engine, "sync_engine", engine)
    setattr(sync_engine.dialect, _KEYRING_ATTRIBUTE, ring)


def keyring_of(dialect: Dialect) -> KeyRing:
    ring: KeyRing | None = getattr(dialect, _KEYRING_ATTRIBUTE, None)
    if ring is None:
        raise KeysNotInstalled("the engine has no encryption key ring: create it with storage.db "
                               "(Database.connect / create_engine with a keyring)")
    return ring


def session_keyring(session: Any) -> KeyRing:
    """The key ring of the engine a session (sync or async) is bound to."""
    return keyring_of(session.get_bind().dialect)


# --- column types -------------------------------------------------------------------------------


class EncryptedText(TypeDecorator[str]):
    """Text encrypted under the installed key ring; the ORM and queries see the plaintext.

    SQL cannot look inside: comparing or searching such a column works only with `deterministic=True`
    (equality, and only among values under the same key).
    """

    impl = Text
    cache_ok = True

    def __init__(self, purpose: str, *, deterministic: bool = False) -> None:
        super().__init__()
        self.purpose = purpose
        self.deterministic = deterministic

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return keyring_of(dialect).encrypt(value, purpose=self.purpose, deterministic=self.deterministic)

    def process_result_value(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return keyring_of(dialect).decrypt(value, purpose=self.purpose)


class EncryptedJSON(TypeDecorator[Any]):
    """A JSON document encrypted as a whole (a draft report)."""

    impl = Text
    cache_ok = True
    deterministic = False

    def __init__(self, purpose: str) -> None:
        super().__init__()
        self.purpose = purpose

    def process_bind_param(self, value: Any, dialect: Dialect) -> str | None:
        if value is None:
            return None
        document = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
        return keyring_of(dialect).encrypt(document, purpose=self.purpose)

    def process_result_value(self, value: str | None, dialect: Dialect) -> Any:
        if value is None:
            return None
        return json.loads(keyring_of(dialect).decrypt(value, purpose=self.purpose))


class PseudonymisedKey(TypeDecorator[str]):
    """A lookup key that may contain a user id (a WeChat event key holds the openid): only its keyed hash
    is stored, and lookups hash what they look for. Reading gives the hash."""

    impl = String(128)
    cache_ok = True

    def process_bind_param(self, value: str | None, dialect: Dialect) -> str | None:
        if value is None:
            return None
        return update_key_pseudonym(keyring_of(dialect), value)


def update_key_pseudonym(ring: KeyRing, update_key: str) -> str:
    """A channel update's key as `processed_updates` keeps it, and as a log line names the update: its keyed hash
    (a WeChat event's key holds the resident's openid, a web-chat message's the reference of its cookie). A key
    that is a hash already is kept as it is."""
    return update_key if _is_pseudonym(update_key) else ring.pseudonym("update", update_key)


def _is_pseudonym(value: str) -> bool:
    return len(value) == PSEUDONYM_CHARS and all(c in "0123456789abcdef" for c in value)


ENCRYPTED_TYPES = (EncryptedText, EncryptedJSON)
