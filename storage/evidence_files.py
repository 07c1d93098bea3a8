"""Evidence files encrypted at rest: AES-256-GCM per file, written and read in chunks.

A stored file is

    b"QLE1" ‖ key id (8 ASCII hex digits) ‖ nonce prefix (8 random bytes) ‖ chunk ‖ chunk ‖ …

where each chunk is AES-GCM of up to `CHUNK` bytes of the file under the key ring's key with that id,
with the nonce `prefix ‖ chunk number (4 bytes)`. The associated data of a chunk is the header, the
file's purpose (`evidence:<stored name>`, so a file moved under another name does not decrypt) and
whether it is the last chunk, so a file cut short after a chunk boundary is refused too. Memory stays at
one chunk whatever the file's size. A file without the magic prefix is from before encryption: it is
read as it is, counted as plaintext by `qinglian keys status` and encrypted by `qinglian keys rotate`.

The classifier's model files are stored the same way (`SealedFiles`, handed to nlp's model registry by the
room that owns the key ring): their vocabulary holds words of the reports staff labelled.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

from cryptography.exceptions import InvalidTag

from storage.crypto import DataKey, DecryptionError, KeyRing

MAGIC = b"QLE1"
KEY_ID_BYTES = 8
PREFIX_BYTES = 8
HEADER_BYTES = len(MAGIC) + KEY_ID_BYTES + PREFIX_BYTES
CHUNK = 64 * 1024
TAG_BYTES = 16
PLAINTEXT = "plaintext"


def purpose_of(stored_name: str) -> str:
    return f"evidence:{stored_name}"


def _associated(header: bytes, purpose: str, last: bool) -> bytes:
    return header + purpose.encode() + (b"\x01" if last else b"\x00")


def _nonce(prefix: bytes, number: int) -> bytes:
    return prefix + number.to_bytes(4, "big")


def _rechunk(content: bytes | Iterable[bytes]) -> Iterator[bytes]:
    """The content in pieces of exactly `CHUNK` bytes (the last one shorter, possibly empty)."""
    if isinstance(content, bytes):
        content = [content]
    pending = bytearray()
    for piece in content:
        pending += piece
        while len(pending) > CHUNK:
            yield bytes(pending[:CHUNK])
            del pending[:CHUNK]
    yield bytes(pending)


def encrypted_chunks(key: DataKey, content: bytes | Iterable[bytes], *, purpose: str) -> Iterator[bytes]:
    """The stored form of `content`, piece by piece (the header first)."""
    header = MAGIC + key.key_id.encode() + secrets.token_bytes(PREFIX_BYTES)
    yield header
    prefix = header[-PREFIX_BYTES:]
    pieces = _rechunk(content)
    current = next(pieces)
    number = 0
    for following in pieces:
        yield key.gcm.encrypt(_nonce(prefix, number), current, _associated(header, purpose, False))
        current, number = following, number + 1
    yield key.gcm.encrypt(_nonce(prefix, number), current, _associated(header, purpose, True))


def write_encrypted(ring: KeyRing, path: Path, content: bytes | Iterable[bytes], *, purpose: str,
                    key: DataKey | None = None) -> int:
    """Encrypt `content` into `path` (under the ring's current key unless `key` is given), atomically:
    a temporary file renamed into place. Returns the plaintext's size. Blocking: run it in a thread."""
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.part")
    size = 0

    def counted() -> Iterator[bytes]:
        nonlocal size
        for piece in ([content] if isinstance(content, bytes) else content):
            size += len(piece)
            yield piece

    try:
        with temporary.open("wb") as out:
            for piece in encrypted_chunks(key or ring.current, counted(), purpose=purpose):
                out.write(piece)
            out.flush()
            os.fsync(out.fileno())
        temporary.replace(path)
    except OSError as problem:
        temporary.unlink(missing_ok=True)
        if problem.filename is None:
            # a write or a sync that failed (a full disk: the file was opened, its first block found no room)
            # names no file, and the edge that logs it could not tell it from a database that is down
            raise OSError(problem.errno, problem.strerror, str(path)) from problem
        raise
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return size


def key_id_of_file(path: Path) -> str:
    """The key id a stored file is encrypted under, or `PLAINTEXT` for a file from before encryption."""
    with path.open("rb") as handle:
        head = handle.read(HEADER_BYTES)
    if len(head) == HEADER_BYTES and head.startswith(MAGIC):
        return head[len(MAGIC):len(MAGIC) + KEY_ID_BYTES].decode("ascii", "replace")
    return PLAINTEXT


def read_decrypted(ring: KeyRing, path: Path, *, purpose: str) -> Iterator[bytes]:
    """The file's content, chunk by chunk; `DecryptionError` if it was altered, cut short, moved or is
    under a key the ring does not have. Blocking: iterate it in a thread."""
    with path.open("rb") as handle:
        header = handle.read(HEADER_BYTES)
        if not (len(header) == HEADER_BYTES and header.startswith(MAGIC)):  # from before encryption
            yield header
            while piece := handle.read(CHUNK):
                yield piece
            return
        key_id = header[len(MAGIC):len(MAGIC) + KEY_ID_BYTES].decode("ascii", "replace")
        key = ring.keys.get(key_id)
        if key is None:
            raise DecryptionError(f"evidence file {path.name} is encrypted under key {key_id}, which is not in "
                                  "the key ring")
        prefix = header[-PREFIX_BYTES:]
        stored = CHUNK + TAG_BYTES
        current = handle.read(stored)
        number = 0
        while True:
            following = handle.read(stored)
            last = not following
            try:
                yield key.gcm.decrypt(_nonce(prefix, number), current, _associated(header, purpose, last))
            except InvalidTag:
                raise DecryptionError(f"evidence file {path.name} failed authentication: altered, cut short "
                                      "or moved") from None
            if last:
                return
            current, number = following, number + 1


def reencrypt(ring: KeyRing, path: Path, *, purpose: str, target: DataKey) -> bool:
    """Rewrite a stored file under `target` (a plaintext one gets encrypted); False if it already is."""
    if key_id_of_file(path) == target.key_id:
        return False
    write_encrypted(ring, path, read_decrypted(ring, path, purpose=purpose), purpose=purpose, key=target)
    return True


@dataclass(frozen=True)
class SealedFiles:
    """This file encryption under one key ring, as `nlp.artifact.ArtifactCipher`: the classifier's models are
    encrypted with it. Picklable (the ring travels to a training process)."""

    ring: KeyRing

    def write(self, path: Path, content: bytes | Iterable[bytes], *, purpose: str) -> int:
        return write_encrypted(self.ring, path, content, purpose=purpose)

    def read(self, path: Path, *, purpose: str) -> Iterator[bytes]:
        """`read_decrypted`, with its `DecryptionError` as the `ValueError` the protocol names."""
        try:
            yield from read_decrypted(self.ring, path, purpose=purpose)
        except DecryptionError as problem:
            raise ValueError(str(problem)) from None
