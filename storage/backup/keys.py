"""Whether the configured keys read an archive (`KeyCheck`), found during the verifying pass of a restore, so
that a restore under other keys is refused before anything is written instead of leaving a database whose
pages fail to decrypt.

The check collects one encrypted value per key id (and the key ids in the headers of the evidence and model
files), decrypts each value with the configured key ring, and compares the pseudonym of one conversation and
one case with the pseudonym the configured pseudonym key gives its decrypted user id. A key id names its key
(an HMAC of it), so a key id the ring holds is the key the file was written with.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import PurePosixPath

from storage import evidence_files
from storage.backup.format import BackupError
from storage.backup.read import Consumer
from storage.crypto import DecryptionError, KeyRing, key_id_of_value
from storage.keys import encrypted_columns

_FILE_KEY_ID = re.compile(r"[0-9a-f]{8}")
_PSEUDONYMISED = {"conversations": ("user_key", "user_ref"), "cases": ("reporter_key", "reporter_ref")}
"""Tables that keep a channel user's pseudonym next to the encrypted user id: (pseudonym, encrypted id)."""


class KeyCheck(Consumer):
    """A verifying pass that also samples what the keys must read; `confirm(ring)` raises `BackupError`."""

    def __init__(self) -> None:
        self.purposes: dict[str, dict[str, str]] = {}  # table -> encrypted column -> purpose
        for encrypted in encrypted_columns():
            self.purposes.setdefault(encrypted.table.name, {})[encrypted.name] = encrypted.purpose
        self.values: dict[str, tuple[str, str]] = {}  # key id -> (purpose, a stored value under it)
        self.file_key_ids: set[str] = set()
        self.pseudonyms: dict[str, tuple[str, str, str]] = {}  # table -> channel, pseudonym, encrypted user id

    def table_part(self, table_name: str, lines: Iterator[bytes]) -> int:
        purposes = self.purposes.get(table_name)
        if not purposes:
            return super().table_part(table_name, lines)
        count = 0
        for line in lines:
            if not line.strip():
                continue
            count += 1
            row = json.loads(line)
            for name, purpose in purposes.items():
                value = row.get(name)
                key_id = key_id_of_value(value) if isinstance(value, str) else None
                if key_id is not None and key_id not in self.values:
                    self.values[key_id] = (purpose, value)
            if table_name in _PSEUDONYMISED and table_name not in self.pseudonyms:
                key_column, ref_column = _PSEUDONYMISED[table_name]
                channel, user_key, user_ref = row.get("channel"), row.get(key_column), row.get(ref_column)
                if isinstance(channel, str) and isinstance(user_key, str) and isinstance(user_ref, str) \
                        and key_id_of_value(user_ref) is not None:  # not erased, not from before encryption
                    self.pseudonyms[table_name] = (channel, user_key, user_ref)
        return count

    def data_file(self, relative: PurePosixPath, chunks: Iterator[bytes]) -> None:
        head = next(chunks, b"")[:evidence_files.HEADER_BYTES]
        if len(head) == evidence_files.HEADER_BYTES and head.startswith(evidence_files.MAGIC):
            key_id = head[len(evidence_files.MAGIC):len(evidence_files.MAGIC) + evidence_files.KEY_ID_BYTES]
            text = key_id.decode("ascii", "replace")
            if _FILE_KEY_ID.fullmatch(text):  # not in the format otherwise: a file from before encryption
                self.file_key_ids.add(text)

    def confirm(self, ring: KeyRing) -> None:
        """Raise `BackupError` (one line naming what is wrong) unless `ring` reads what was sampled."""
        missing = sorted((set(self.values) | self.file_key_ids) - set(ring.keys))
        if missing:
            held = ", ".join(sorted(ring.keys))
            keys = f"key {missing[0]}" if len(missing) == 1 else f"keys {', '.join(missing)}"
            raise BackupError(f"the backup is encrypted under {keys}, which the configured key ring does not hold "
                              f"(it holds {held}): set the key of "
                              "the backup's time as QINGLIAN_ENCRYPTION_KEY or in QINGLIAN_ENCRYPTION_OLD_KEYS; "
                              "nothing was restored")
        for key_id, (purpose, value) in sorted(self.values.items()):
            try:
                ring.decrypt(value, purpose=purpose)
            except DecryptionError:
                raise BackupError(f"a value of {purpose} in the backup does not decrypt under key {key_id} "
                                  "(altered or damaged); nothing was restored") from None
        for table_name, (channel, user_key, user_ref) in sorted(self.pseudonyms.items()):
            purpose = f"{table_name}.{_PSEUDONYMISED[table_name][1]}"
            try:
                user_id = ring.decrypt(user_ref, purpose=purpose)
            except DecryptionError:
                raise BackupError(f"a value of {purpose} in the backup does not decrypt (altered or damaged); "
                                  "nothing was restored") from None
            if ring.pseudonym(channel, user_id) != user_key:
                raise BackupError("the configured QINGLIAN_PSEUDONYM_KEY is not the one the backup was made with "
                                  "(residents would not find their conversations and reports): set the backup's; "
                                  "nothing was restored")
