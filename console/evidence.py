"""Serving an evidence file: decrypted chunk by chunk off the event loop, never held whole in memory."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote

from fastapi.responses import StreamingResponse

from storage.crypto import DecryptionError, KeyRing
from storage.evidence_files import purpose_of, read_decrypted
from storage.models import Attachment


class EvidenceUnreadable(Exception):
    """The stored file does not decrypt with the key ring (altered, or under a key no longer configured)."""


async def evidence_response(ring: KeyRing, path: Path, stored: Attachment, *, inline: bool, media_type: str,
                            headers: dict[str, str]) -> StreamingResponse:
    chunks = read_decrypted(ring, path, purpose=purpose_of(stored.stored_name))
    try:
        first = await asyncio.to_thread(next, chunks, b"")  # a wrong key or a damaged file shows before any byte
    except DecryptionError as problem:
        raise EvidenceUnreadable(str(problem)) from None
    body: Iterator[bytes] = itertools.chain([first], chunks)  # the rest is read in Starlette's thread pool
    name = stored.original_name or f"evidence-{stored.id}"
    disposition = f"{'inline' if inline else 'attachment'}; filename*=utf-8''{quote(name)}"
    return StreamingResponse(body, media_type=media_type, headers={
        **headers, "Content-Disposition": disposition, "Content-Length": str(stored.size_bytes)})
