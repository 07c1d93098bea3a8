"""Evidence files encrypted at rest, written and read in chunks: what comes back is what went in, and a
file altered, cut short, moved under another name or under an unknown key is refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from storage.crypto import DataKey, DecryptionError, KeyRing, generate_key, parse_key
from storage.evidence_files import CHUNK, PLAINTEXT, key_id_of_file, purpose_of, read_decrypted, write_encrypted
from tests.conftest import make_test_keyring

NAME = "2026/12/photo.jpg"


def _read(ring: KeyRing, path: Path, name: str = NAME) -> bytes:
    return b"".join(read_decrypted(ring, path, purpose=purpose_of(name)))


@pytest.mark.parametrize("size", [0, 1, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 17])
def test_content_of_any_size_comes_back_and_nothing_of_it_is_stored_readable(tmp_path: Path, size: int) -> None:
    ring = make_test_keyring()
    content = (b"EVIDENCE-" * (size // 9 + 1))[:size]
    path = tmp_path / NAME
    assert write_encrypted(ring, path, [content[:5], content[5:]], purpose=purpose_of(NAME)) == size
    assert _read(ring, path) == content
    stored = path.read_bytes()
    assert key_id_of_file(path) == ring.current.key_id
    assert size < 9 or b"EVIDENCE" not in stored
    assert list(tmp_path.rglob(".*.part")) == []


def test_altered_truncated_moved_or_foreign_files_are_refused(tmp_path: Path) -> None:
    ring = make_test_keyring()
    path = tmp_path / NAME
    write_encrypted(ring, path, b"x" * (2 * CHUNK + 100), purpose=purpose_of(NAME))
    stored = path.read_bytes()
    altered = bytearray(stored)
    altered[len(stored) // 2] ^= 1
    cases = {
        "altered": bytes(altered),
        "cut at a chunk boundary": stored[: 20 + CHUNK + 16],
        "cut short": stored[:-5],
    }
    for content in cases.values():
        path.write_bytes(content)
        with pytest.raises(DecryptionError):
            _read(ring, path)
    path.write_bytes(stored)
    with pytest.raises(DecryptionError):  # the same file under another name
        _read(ring, path, "2026/12/other.jpg")
    other = KeyRing(DataKey(parse_key(generate_key())), pseudonym_key=b"p" * 32)
    with pytest.raises(DecryptionError, match="not in the key ring"):
        _read(other, path)


def test_a_file_from_before_encryption_is_read_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pdf"
    path.write_bytes(b"%PDF-1.4 old")
    assert key_id_of_file(path) == PLAINTEXT
    assert _read(make_test_keyring(), path, "legacy.pdf") == b"%PDF-1.4 old"
