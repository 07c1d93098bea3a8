"""Serving an evidence file: decrypted chunk by chunk off the event loop, never held whole in memory; and the
small re-encoded image the ticket page shows of it, made on first request and kept encrypted beside it."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from fastapi.responses import Response, StreamingResponse

from storage.crypto import DecryptionError, KeyRing
from storage.evidence_files import purpose_of, read_decrypted, write_encrypted
from storage.evidence_images import ImageRefused, make_thumbnail, thumbnail_name
from storage.models import Attachment


class EvidenceUnreadable(Exception):
    """The stored file does not decrypt with the key ring (altered, or under a key no longer configured)."""


class NoThumbnail(Exception):
    """The stored file does not decode as the image it was taken as (a file kept before images were checked)."""


def _disposition(name: str, *, inline: bool) -> str:
    return f"{'inline' if inline else 'attachment'}; filename*=utf-8''{quote(name)}"


async def evidence_response(ring: KeyRing, path: Path, stored: Attachment, *, name: str, inline: bool,
                            media_type: str, headers: dict[str, str]) -> StreamingResponse:
    """The file under `name` (the neutral name staff see, never the resident's)."""
    chunks = read_decrypted(ring, path, purpose=purpose_of(stored.stored_name))
    try:
        first = await asyncio.to_thread(next, chunks, b"")  # a wrong key or a damaged file shows before any byte
    except DecryptionError as problem:
        raise EvidenceUnreadable(str(problem)) from None
    body: Iterator[bytes] = itertools.chain([first], chunks)  # the rest is read in Starlette's thread pool
    return StreamingResponse(body, media_type=media_type, headers={
        **headers, "Content-Disposition": _disposition(name, inline=inline), "Content-Length": str(stored.size_bytes)})


def thumbnail(ring: KeyRing, evidence_dir: Path, stored: Attachment) -> bytes:
    """The JPEG thumbnail of an evidence image: the cached one, or made from the file and cached (encrypted, under
    `thumbnail_name`; two requests at once both make it, the second replacing the first whole). Blocking: run it
    in a thread."""
    cached_name = thumbnail_name(stored.stored_name)
    cached = evidence_dir / cached_name
    try:
        if cached.is_file():
            return b"".join(read_decrypted(ring, cached, purpose=purpose_of(cached_name)))
        content = b"".join(read_decrypted(ring, evidence_dir / stored.stored_name,
                                          purpose=purpose_of(stored.stored_name)))
    except DecryptionError as problem:
        raise EvidenceUnreadable(str(problem)) from None
    try:
        small = make_thumbnail(content, stored.media_type)
    except ImageRefused as refused:
        raise NoThumbnail(refused.reason) from None
    write_encrypted(ring, cached, small, purpose=purpose_of(cached_name))
    return small


async def thumbnail_response(ring: KeyRing, evidence_dir: Path, stored: Attachment, *, name: str,
                             headers: dict[str, str]) -> Response:
    small = await asyncio.to_thread(thumbnail, ring, evidence_dir, stored)
    return Response(small, media_type="image/jpeg",
                    headers={**headers, "Content-Disposition": _disposition(name, inline=True)})
