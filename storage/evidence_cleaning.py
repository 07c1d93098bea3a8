"""Cleaning evidence stored before its metadata was removed when taken: `qinglian evidence clean`.

Every attachment row remembers when its file was made free of its metadata (`Attachment.cleaned_at`, migration
0049): a file taken now is cleaned as it is stored; one stored before has none, whatever it is (an image from before
images were re-encoded, any PDF from before PDFs were rewritten). `clean_stored_evidence` walks those rows by id, a
batch of ids at a time, and for each file in its own transaction: reads and decrypts it, cleans it as
`handlers.evidence` does when a file is taken (`clean_image`, `clean_pdf`), updates the row (the clean file's size
and SHA-256, the device's name of the file dropped, marked clean, an audit entry with both hashes:
`evidence_rows.mark_evidence_cleaned`), writes the clean file over the old one (encrypted under the current key, renamed
into place) and an image's thumbnail from the clean file, then commits.

The row is locked (PostgreSQL: `FOR UPDATE`; SQLite: the write lock of the flushed update) before the file is
written, so a draft deleted meanwhile is skipped rather than written back. Interrupted, nothing is half done: a file
rewritten whose row was not committed is found again and cleaned again (a clean PDF comes out byte for byte the
same; a JPEG is re-encoded once more). A file that cannot be cleaned (missing, not decrypting, not decoding) is
reported with the reason and left as it is, not marked: the next run tries it again.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import func, select
from sqlalchemy.orm.exc import StaleDataError

from storage import evidence_rows
from storage.crypto import DecryptionError, KeyRing
from storage.db import Database
from storage.evidence_documents import PdfRefused, clean_pdf, is_pdf
from storage.evidence_files import purpose_of, read_decrypted, write_encrypted
from storage.evidence_images import ImageRefused, clean_image, is_image, make_thumbnail, thumbnail_name
from storage.models import Attachment


@dataclass
class CleaningSummary:
    """What a run found: files cleaned (or, in a dry run, to clean), files already clean, and the files that could
    not be cleaned, by attachment id, with the reason."""

    cleaned: int = 0
    already_clean: int = 0
    failed: dict[int, str] = field(default_factory=dict)
    dry_run: bool = False


class CannotClean(Exception):
    """The stored file cannot be cleaned; the message says why."""


def _cleaned(content: bytes, media_type: str) -> bytes:
    try:
        if is_image(media_type):
            return clean_image(content, media_type)
        if is_pdf(media_type):
            return clean_pdf(content)
    except ImageRefused as refused:
        problem = f"has {refused.reason.removeprefix('too_many_').join(('too many ', ''))}" \
            if refused.reason.startswith("too_many_") else f"is {refused.reason.replace('_', ' ')}"
        raise CannotClean(f"the {media_type} image {problem}") from None
    except PdfRefused as refused:
        raise CannotClean(f"the PDF is {refused.reason.replace('_', ' ')}" if refused.reason != "too_many_pages"
                          else "the PDF has too many pages") from None
    raise CannotClean(f"{media_type} files are not evidence the service takes, and are not cleaned")


def clean_file(ring: KeyRing, evidence_dir: Path, stored_name: str, media_type: str) -> bytes:
    """The stored file's content without its metadata; `CannotClean` with the reason. Blocking."""
    path = evidence_dir / stored_name
    if not path.is_file():
        raise CannotClean(f"the file {stored_name} is missing from the evidence directory")
    try:
        content = b"".join(read_decrypted(ring, path, purpose=purpose_of(stored_name)))
    except DecryptionError as problem:
        raise CannotClean(str(problem)) from None
    return _cleaned(content, media_type)


def store_clean_file(ring: KeyRing, evidence_dir: Path, stored_name: str, media_type: str, content: bytes) -> None:
    """Write the clean content over the stored file, and an image's thumbnail made from it. Blocking."""
    write_encrypted(ring, evidence_dir / stored_name, content, purpose=purpose_of(stored_name))
    if is_image(media_type):
        small_name = thumbnail_name(stored_name)
        write_encrypted(ring, evidence_dir / small_name, make_thumbnail(content, media_type),
                        purpose=purpose_of(small_name))


async def clean_stored_evidence(database: Database, ring: KeyRing, evidence_dir: Path, *, via: str,
                                batch_size: int = 100, dry_run: bool = False,
                                on_start: Callable[[int], None] | None = None,
                                on_file: Callable[[], None] | None = None) -> CleaningSummary:
    """Clean every evidence file not yet marked clean (see the module); `via` names who ran it, for the audit log.
    A dry run only counts. `on_start(files to clean)` and `on_file()` report progress."""
    not_clean = Attachment.cleaned_at.is_(None)
    async with database.read_sessionmaker() as session:
        rows = (await session.execute(
            select(not_clean, func.count()).select_from(Attachment).group_by(not_clean))).all()
    counts = {bool(unclean): int(count) for unclean, count in rows}
    summary = CleaningSummary(already_clean=counts.get(False, 0), dry_run=dry_run)
    if dry_run:
        summary.cleaned = counts.get(True, 0)
        return summary
    if on_start is not None:
        on_start(counts.get(True, 0))
    last_id = 0
    while True:
        async with database.read_sessionmaker() as session:
            ids = list((await session.execute(
                select(Attachment.id).where(not_clean, Attachment.id > last_id).order_by(Attachment.id)
                .limit(batch_size))).scalars())
        if not ids:
            return summary
        for attachment_id in ids:
            last_id = attachment_id
            try:
                if await _clean_one(database, ring, evidence_dir, attachment_id, via):
                    summary.cleaned += 1
                else:
                    summary.already_clean += 1
            except CannotClean as problem:
                summary.failed[attachment_id] = str(problem)
            if on_file is not None:
                on_file()


class _Deleted(Exception):
    """The row went between reading it and updating it."""


async def _clean_one(database: Database, ring: KeyRing, evidence_dir: Path, attachment_id: int, via: str) -> bool:
    """Clean one row's file in one transaction; False when another run marked it clean (or it was deleted)
    meanwhile."""
    try:
        async with database.sessionmaker.begin() as session:
            attachment = (await session.execute(
                select(Attachment).where(Attachment.id == attachment_id, Attachment.cleaned_at.is_(None))
                .with_for_update())).scalar_one_or_none()
            if attachment is None:
                return False
            stored_name, media_type = attachment.stored_name, attachment.media_type
            content = await asyncio.to_thread(clean_file, ring, evidence_dir, stored_name, media_type)
            try:
                await evidence_rows.mark_evidence_cleaned(session, attachment, size_bytes=len(content),
                                                    sha256=hashlib.sha256(content).hexdigest(), via=via)
            except StaleDataError:  # a draft deleted with its files meanwhile (SQLite takes no row lock above)
                raise _Deleted from None
            await asyncio.to_thread(store_clean_file, ring, evidence_dir, stored_name, media_type, content)
    except _Deleted:
        return False
    return True
