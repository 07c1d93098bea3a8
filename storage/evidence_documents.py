"""Evidence PDFs as they are kept: rewritten with their pages only, without what the author's software wrote about
them.

A PDF's document information dictionary names its author, its title (often the file's own name, with whatever the
resident typed into it), the program and computer that made it and when; its XMP metadata stream says the same
and more. Any of them can name the resident. `clean_pdf` reads the document with pypdf and writes a new one from
its pages: no document information, no XMP stream (neither the document's nor a page's), and nothing else of the
document's catalogue (outline, named destinations, embedded files, scripts, the form's field tree). What a page
shows is kept as it is: its content, fonts, images and annotations; what it would do is not (a script run when the
page is opened, an annotation's actions but a plain link).

A PDF that pypdf cannot read, one without pages, or one that needs a password to open is refused (`PdfRefused`).
One that opens without a password but restricts printing or copying (an owner password only, as many bank
statements have) is taken and written without the encryption. One whose structure (cross-reference and object
streams, the only streams cleaning decodes) inflates to more than `MAX_DECODED_BYTES` is refused too. Blocking (CPU):
run it in a thread.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pypdf import PdfReader

# pypdf (with the fontTools and Pillow modules it imports) is imported by the functions that read a PDF, when the
# first PDF arrives: about 9 MB in every serving process that never receives one.

MEDIA_TYPE = "application/pdf"
MAX_PAGES = 1000
"""The most pages an evidence PDF may have. Writing costs per page whatever the page holds: a 600 KB PDF whose page
tree lists one empty page 100,000 times took 9 s to clean and came out as 10 MB, and a 10 MB one would hold a CPU for
minutes. Counted in the page tree before any page is read."""

MAX_DECODED_BYTES = 4_000_000
"""The most bytes one stream may inflate to while the document is read (pypdf's default is 75 MB a stream). pypdf
parses what cross-reference and object streams hold byte by byte (about 4 MB a second): a 40 KB PDF whose object
stream inflates to 40 MB of spaces held a CPU for 10 s, and a 10 MB one of 140 such streams for over half an hour.
A page's content is copied as it is, never inflated, and a document's structure is small next to it: a thousand
pages of twenty objects make about 4 MB, in several object streams."""

_STREAM_LIMITS = ("zlib_maximum_output_length", "lzw_maximum_output_length", "run_length_maximum_output_length",
                  "brotli_maximum_output_length", "array_based_stream_maximum_output_length")
"""pypdf's per-stream output limits (`pypdf.Configuration`) that `clean_pdf` lowers to `MAX_DECODED_BYTES`."""

_PAGE_METADATA = ("/Metadata", "/PieceInfo")
"""What a page may carry about its making rather than its content: its own XMP stream, and an application's private
data (the editor's name and settings)."""


_ACTIONS_KEPT = frozenset({"/URI", "/GoTo"})
"""What a link on a page may do and still be kept: open a web address (what the page links to is part of what it
shows) or go to a place in the document. Every other action (a script, launching a program, sending a form,
fetching a file) would run for whoever opens the evidence, and is dropped."""


def _without_actions(page: Any) -> None:
    """Drop what the page would do by itself (its additional actions, such as a script run when it is opened) and
    every action of its annotations but a plain link."""
    from pypdf.generic import NameObject

    page.pop(NameObject("/AA"), None)
    annotations = page.get("/Annots")
    for reference in (annotations.get_object() if annotations is not None else []):
        annotation = reference.get_object()
        if not hasattr(annotation, "pop"):
            continue
        annotation.pop(NameObject("/AA"), None)
        action = annotation.get("/A")
        action = action.get_object() if action is not None else None
        if action is not None and (not hasattr(action, "get") or action.get("/S") not in _ACTIONS_KEPT
                                   or "/Next" in action):
            annotation.pop(NameObject("/A"), None)


class PdfRefused(ValueError):
    """A PDF that pypdf cannot read or that has no pages (`reason` "unreadable"), one that needs a password to be
    opened ("encrypted"), one of more than `MAX_PAGES` pages ("too_many_pages"), or one whose structure inflates to
    more than `MAX_DECODED_BYTES` ("too_complex")."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def is_pdf(media_type: str) -> bool:
    return media_type == MEDIA_TYPE


def _more_pages_than(reader: PdfReader, limit: int) -> bool:
    """Whether the page tree has more than `limit` pages (or, a tree made to be walked, more than `limit` nodes
    besides), counted from its `/Kids` arrays without reading a page; stops as soon as it knows."""
    root: Any = reader.trailer["/Root"].get_object()
    stack: list[Any] = [root["/Pages"]]
    pages = nodes = 0
    while stack:
        node = stack.pop().get_object()
        nodes += 1
        kids = node.get("/Kids") if hasattr(node, "get") else None
        if kids is None:
            pages += 1
        else:
            stack.extend(kids.get_object())
        if pages > limit or nodes > 2 * limit or len(stack) > limit:
            return True
    return False


def _read(content: bytes) -> PdfReader:
    """The document, decrypted when it opens without a password; every page read (a broken page tree shows here)."""
    from pypdf import PdfReader
    from pypdf.errors import LimitReachedError

    try:
        reader = PdfReader(io.BytesIO(content))
        if reader.is_encrypted and not reader.decrypt(""):
            raise PdfRefused("encrypted")
        if _more_pages_than(reader, MAX_PAGES):
            raise PdfRefused("too_many_pages")
        if len(reader.pages) == 0:
            raise PdfRefused("unreadable")
    except (PdfRefused, LimitReachedError):
        raise
    except Exception:  # noqa: BLE001 - pypdf raises many kinds for a broken or hostile file: all are refusals
        raise PdfRefused("unreadable") from None
    return reader


def clean_pdf(content: bytes) -> bytes:
    """The PDF written anew from its pages, without its document information dictionary or XMP metadata.
    `PdfRefused` when it does not open, or when a stream it must inflate to read the document's structure inflates
    past `MAX_DECODED_BYTES` (pypdf's own limits, set through its configuration for this document only)."""
    from pypdf import apply_configuration, get_configuration
    from pypdf.errors import LimitReachedError

    with apply_configuration(get_configuration().with_overwrites(
            **{name: MAX_DECODED_BYTES for name in _STREAM_LIMITS})):
        try:
            return _clean(content)
        except LimitReachedError:
            raise PdfRefused("too_complex") from None


def _clean(content: bytes) -> bytes:
    from pypdf import PdfWriter
    from pypdf.errors import LimitReachedError
    from pypdf.generic import NameObject

    reader = _read(content)
    try:
        writer = PdfWriter()
        for page in reader.pages:
            for key in _PAGE_METADATA:  # dropped before the page is copied: what it refers to is not copied either
                page.pop(NameObject(key), None)
            _without_actions(page)
            writer.add_page(page)
        writer.metadata = None
        writer.xmp_metadata = None
        out = io.BytesIO()
        writer.write(out)
    except LimitReachedError:
        raise
    except Exception:  # noqa: BLE001 - a damaged object shows only when the pages are copied
        raise PdfRefused("unreadable") from None
    return out.getvalue()
