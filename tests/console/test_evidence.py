"""Serving an evidence file to staff (console.evidence): the stored file decrypted whole, over several chunks, as
an attachment or inline under the name the console gives it (encoded so that no name can break the header), with
the caller's headers and the stored size; a file that does not decrypt (another key, altered, moved under another
name) is refused before any byte is sent; a file from before encryption is served as it is. And the thumbnail of
an image: a small JPEG without metadata, made once and kept encrypted beside the file."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
from fastapi.responses import StreamingResponse
from PIL import Image

from console.evidence import EvidenceUnreadable, NoThumbnail, evidence_response, thumbnail
from storage.crypto import DataKey, KeyRing
from storage.evidence_files import CHUNK, key_id_of_file, purpose_of, read_decrypted, write_encrypted
from storage.models import Attachment
from tests.conftest import make_test_keyring
from tests.factories import hidden_words_in, photo_with_metadata

RING = make_test_keyring()
PHOTO = bytes(range(256)) * (CHUNK // 256 * 2 + 3)  # two full chunks and a part of a third
HEADERS = {"X-Content-Type-Options": "nosniff", "Cache-Control": "private, no-store"}


def _stored(tmp_path: Path, content: bytes, *, name: str = "2026/03/a1b2c3", original: str | None = "现场 照片.jpg",
            ring: KeyRing = RING, size: int | None = None) -> tuple[Path, Attachment]:
    path = tmp_path / name
    write_encrypted(ring, path, content, purpose=purpose_of(name))
    return path, Attachment(id=17, stored_name=name, original_name=original, media_type="image/jpeg",
                            size_bytes=len(content) if size is None else size, sha256="0" * 64)


async def _body(response: StreamingResponse) -> bytes:
    body = b""
    async for chunk in response.body_iterator:
        assert isinstance(chunk, bytes)
        body += chunk
    return body


async def test_a_file_is_served_whole_as_an_attachment_under_the_name_it_is_given(tmp_path: Path) -> None:
    path, stored = _stored(tmp_path, PHOTO)
    response = await evidence_response(RING, path, stored, name="现场 照片.jpg", inline=False, media_type="image/jpeg",
                                       headers=HEADERS)
    assert (response.status_code, response.media_type) == (200, "image/jpeg")
    assert {name: response.headers[name] for name in ("content-disposition", "content-length", *HEADERS)} == {
        "content-disposition": "attachment; filename*=utf-8''%E7%8E%B0%E5%9C%BA%20%E7%85%A7%E7%89%87.jpg",
        "content-length": str(len(PHOTO)), "X-Content-Type-Options": "nosniff",
        "Cache-Control": "private, no-store"}
    assert await _body(response) == PHOTO


async def test_a_file_shown_inline_is_named_inline(tmp_path: Path) -> None:
    path, stored = _stored(tmp_path, b"\xff\xd8\xff\xe0jpeg", original=None)
    response = await evidence_response(RING, path, stored, name="evidence-17.jpg", inline=True,
                                       media_type="image/jpeg", headers={})
    assert response.headers["content-disposition"] == "inline; filename*=utf-8''evidence-17.jpg"
    assert await _body(response) == b"\xff\xd8\xff\xe0jpeg"


async def test_a_hostile_name_cannot_break_out_of_the_header(tmp_path: Path) -> None:
    path, stored = _stored(tmp_path, b"%PDF-1.4")
    response = await evidence_response(RING, path, stored, name='a"; filename=run.exe\r\nSet-Cookie: x=1;.pdf',
                                       inline=False, media_type="application/pdf", headers={})
    assert response.headers["content-disposition"] == (
        "attachment; filename*=utf-8''a%22%3B%20filename%3Drun.exe%0D%0ASet-Cookie%3A%20x%3D1%3B.pdf")
    assert "set-cookie" not in response.headers


async def test_an_empty_file_is_an_empty_body_and_the_length_is_the_stored_size(tmp_path: Path) -> None:
    path, stored = _stored(tmp_path, b"")
    response = await evidence_response(RING, path, stored, name="n", inline=False, media_type="image/jpeg", headers={})
    assert (response.headers["content-length"], await _body(response)) == ("0", b"")


async def test_a_file_from_before_encryption_is_served_as_it_is(tmp_path: Path) -> None:
    path = tmp_path / "legacy.pdf"
    path.write_bytes(b"%PDF-1.4\n" + b"1 0 obj\n" * 10_000)
    stored = Attachment(id=3, stored_name="legacy.pdf", original_name="旧材料.pdf", media_type="application/pdf",
                        size_bytes=path.stat().st_size, sha256="0" * 64)
    response = await evidence_response(RING, path, stored, name="n", inline=False, media_type="application/pdf",
                                       headers={})
    assert await _body(response) == path.read_bytes()


async def test_a_file_under_a_key_the_ring_does_not_have_is_refused_with_the_reason(tmp_path: Path) -> None:
    other = KeyRing(DataKey(os.urandom(32), "retired"), pseudonym_key=os.urandom(32))
    path, stored = _stored(tmp_path, PHOTO, ring=other)
    with pytest.raises(EvidenceUnreadable, match=f"evidence file a1b2c3 is encrypted under key "
                                                 f"{other.current.key_id}, which is not in the key ring"):
        await evidence_response(RING, path, stored, name="n", inline=False, media_type="image/jpeg", headers={})


async def test_an_altered_file_is_refused_before_any_byte_is_sent(tmp_path: Path) -> None:
    path, stored = _stored(tmp_path, PHOTO)
    content = bytearray(path.read_bytes())
    content[100] ^= 0x01  # in the first chunk
    path.write_bytes(bytes(content))
    with pytest.raises(EvidenceUnreadable, match="evidence file a1b2c3 failed authentication: altered, cut short "
                                                 "or moved"):
        await evidence_response(RING, path, stored, name="n", inline=False, media_type="image/jpeg", headers={})


async def test_a_file_moved_under_another_attachments_name_does_not_decrypt(tmp_path: Path) -> None:
    path, _ = _stored(tmp_path, PHOTO, name="2026/03/first")
    _, other = _stored(tmp_path, b"another photo", name="2026/03/second")
    with pytest.raises(EvidenceUnreadable, match="failed authentication"):
        await evidence_response(RING, path, other, name="n", inline=False, media_type="image/jpeg", headers={})


def test_a_thumbnail_is_a_small_upright_jpeg_without_metadata_kept_encrypted(tmp_path: Path) -> None:
    photo = photo_with_metadata(1600, 1200)  # stored sideways, EXIF orientation 6: shown 1200 × 1600
    path, stored = _stored(tmp_path, photo, name="2026/03/a1b2c3.jpg")

    small = thumbnail(RING, tmp_path, stored)

    with Image.open(io.BytesIO(small)) as image:
        assert (image.format, image.size, dict(image.getexif())) == ("JPEG", (240, 320), {})
    assert len(small) < len(photo) and hidden_words_in(small) == []
    cached = tmp_path / "2026/03/a1b2c3.jpg.thumb.jpg"
    assert key_id_of_file(cached) == RING.current.key_id
    assert b"".join(read_decrypted(RING, cached, purpose=purpose_of("2026/03/a1b2c3.jpg.thumb.jpg"))) == small
    path.unlink()  # the second request is answered from the cache
    assert thumbnail(RING, tmp_path, stored) == small


def test_a_stored_file_that_is_no_image_has_no_thumbnail(tmp_path: Path) -> None:
    _, stored = _stored(tmp_path, b"\xff\xd8\xff\xe0 kept before images were checked")
    with pytest.raises(NoThumbnail, match="undecodable"):
        thumbnail(RING, tmp_path, stored)
    assert sorted(path.name for path in (tmp_path / "2026/03").iterdir()) == ["a1b2c3"]
