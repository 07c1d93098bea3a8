"""Accepting evidence files: type and size checked on the real bytes, images and PDFs kept without their metadata
(`storage.evidence_images`, `storage.evidence_documents`), written off the event loop."""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from pathlib import Path
from typing import NoReturn

from handlers.context import Turn
from handlers.types import Attachment
from handlers.validation import Invalid, sniff_media_type
from storage import client_limits, evidence_rows
from storage.crypto import session_keyring
from storage.evidence_documents import MAX_PAGES, PdfRefused, clean_pdf, is_pdf
from storage.evidence_files import purpose_of, write_encrypted
from storage.evidence_images import MAX_FRAMES, ImageRefused, clean_image, is_image
from storage.models import Attachment as StoredAttachment

ACCEPTED_TYPES = {
    "image/jpeg": "jpg",
    "image/png": "png",
    "image/gif": "gif",
    "image/webp": "webp",
    "application/pdf": "pdf",
}

UNNAMED_TYPES = frozenset({"application/octet-stream", "binary/octet-stream"})
"""What a client declares for a file whose type it does not know (Telegram's apps and browsers name the type
from the file's name, and a scan saved without an extension has none): its bytes decide."""


OTHER_IMAGE_FORMATS = {"image/heic": "HEIC", "image/heif": "HEIF", "image/heic-sequence": "HEIC",
                       "image/heif-sequence": "HEIF", "image/avif": "AVIF", "image/bmp": "BMP", "image/x-ms-bmp": "BMP",
                       "image/tiff": "TIFF", "image/x-adobe-dng": "DNG", "image/svg+xml": "SVG"}
"""Pictures in formats we do not take, by the type a client declares: named to the resident, with a way to send them."""
_HEIF_BRANDS = {b"heic": "HEIC", b"heix": "HEIC", b"hevc": "HEIC", b"hevx": "HEIC", b"heim": "HEIC", b"heis": "HEIC",
                b"mif1": "HEIF", b"msf1": "HEIF", b"avif": "AVIF", b"avis": "AVIF"}


def other_image_format(declared: str | None, content: bytes) -> str | None:
    """The name of a picture format we do not take ("HEIC", an iPhone's photo), from the file's first bytes, else
    from the type its client declared."""
    if content[4:8] == b"ftyp" and content[8:12] in _HEIF_BRANDS:
        return _HEIF_BRANDS[content[8:12]]
    if content[:2] == b"BM" and content[6:10] == b"\x00\x00\x00\x00":  # its reserved bytes: not any text "BM…"
        return "BMP"
    if content[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    return OTHER_IMAGE_FORMATS.get((declared or "").lower())


def _refuse_other_image(declared: str | None, content: bytes) -> NoReturn:
    """Refuse a file we cannot take: a picture by its format's name and how to send it, anything else by the types
    we take."""
    named = other_image_format(declared, content)
    if named is not None:
        raise Invalid("error_evidence_image_format", format=named)
    raise Invalid("error_evidence_type")


async def accept_file(turn: Turn, attachment: Attachment) -> StoredAttachment:
    """Download, check and store one file; raises `Invalid` with the reason it was refused."""
    limit = turn.ctx.city.limits.max_attachment_bytes
    if attachment.kind not in ("photo", "document"):
        raise Invalid("error_evidence_kind")
    declared = attachment.media_type
    if declared and declared not in ACCEPTED_TYPES and declared not in UNNAMED_TYPES and attachment.kind == "document":
        _refuse_other_image(declared, b"")
    if attachment.size_bytes is not None and attachment.size_bytes > limit:
        raise Invalid("error_evidence_size", limit_mb=limit // (1024 * 1024))
    if attachment.fetch is None:
        raise Invalid("error_evidence_kind")
    try:
        content = await attachment.fetch()
    except Exception:  # noqa: BLE001 - whatever the transport failure, the resident is asked to resend
        raise Invalid("error_evidence_download") from None
    if len(content) > limit:
        raise Invalid("error_evidence_size", limit_mb=limit // (1024 * 1024))
    if not content:
        raise Invalid("error_evidence_empty")
    media_type = sniff_media_type(content)
    if media_type is None:
        _refuse_other_image(declared, content)
    content = await _without_metadata(content, media_type)
    address = _address_key(turn)
    await _check_quotas(turn, len(content), address)
    stored_name = f"{turn.ctx.clock():%Y/%m}/{secrets.token_hex(16)}.{ACCEPTED_TYPES[media_type]}"
    await asyncio.to_thread(write_encrypted, session_keyring(turn.session), turn.ctx.evidence_dir / stored_name,
                            content, purpose=purpose_of(stored_name))
    return await evidence_rows.add_draft_attachment(
        turn.session,
        turn.conversation,
        stored_name=stored_name,
        original_name=None,  # the resident's own name of the file may name them: staff see `display_name`
        media_type=media_type,
        size_bytes=len(content),
        sha256=hashlib.sha256(content).hexdigest(),
        client_key=address,
        cleaned=True,
    )


async def _without_metadata(content: bytes, media_type: str) -> bytes:
    """An image re-encoded from its pixels (no GPS, camera, owner or text), a PDF rewritten from its pages (no
    author, title, creator tool, dates or XMP); refused when it does not open."""
    try:
        if is_image(media_type):
            return await asyncio.to_thread(clean_image, content, media_type)
        if is_pdf(media_type):
            return await asyncio.to_thread(clean_pdf, content)
    except ImageRefused as refused:
        if refused.reason == "too_many_frames":
            raise Invalid("error_evidence_image_too_many_frames", maximum=MAX_FRAMES) from None
        if refused.reason == "too_many_scans":
            raise Invalid("error_evidence_image_too_many_scans") from None
        raise Invalid("error_evidence_image_too_large" if refused.reason == "too_large"
                      else "error_evidence_unreadable") from None
    except PdfRefused as refused:
        if refused.reason == "too_many_pages":
            raise Invalid("error_evidence_pdf_too_many_pages", maximum=MAX_PAGES) from None
        if refused.reason == "too_complex":
            raise Invalid("error_evidence_pdf_too_complex") from None
        raise Invalid("error_evidence_pdf_encrypted" if refused.reason == "encrypted"
                      else "error_evidence_pdf_unreadable") from None
    return content


def display_name(position: int, media_type: str) -> str:
    """The name staff see for the case's `position`th file (from 1): "evidence-2.jpg" — neither the resident's
    name of the file nor anything else they typed."""
    return f"evidence-{position}.{ACCEPTED_TYPES.get(media_type, 'bin')}"


def _address_key(turn: Turn) -> str | None:
    """The keyed hash of the resident's own address where the channel knows it (not a platform's server)."""
    inbound = turn.inbound
    if inbound.client_ip is None or inbound.shared_address:
        return None
    return client_limits.client_key(turn.ctx.secret_key, inbound.client_ip)


async def _check_quotas(turn: Turn, size: int, address: str | None) -> None:
    """Refuse a file that would take the draft, the address or all drafts together over their quota.

    The totals are read under a lock that the step's transaction holds until it commits with the new
    attachment row (`evidence_rows.draft_evidence`): concurrent uploads, in any process, check one after the other."""
    limits = turn.ctx.city.limits
    waiting = await evidence_rows.draft_evidence(turn.session, turn.conversation.id, address)
    if waiting.conversation + size > limits.draft_evidence_bytes_per_conversation:
        raise Invalid("error_evidence_quota_conversation",
                      limit_mb=max(1, limits.draft_evidence_bytes_per_conversation // (1024 * 1024)))
    if address is not None and waiting.address + size > limits.draft_evidence_bytes_per_address:
        raise Invalid("error_evidence_quota_address")
    if waiting.total + size > limits.draft_evidence_bytes_total:
        raise Invalid("error_evidence_quota_total")


async def delete_files(evidence_dir: Path, stored_names: list[str]) -> None:
    def _unlink() -> None:
        for name in stored_names:
            (evidence_dir / name).unlink(missing_ok=True)

    if stored_names:
        await asyncio.to_thread(_unlink)
