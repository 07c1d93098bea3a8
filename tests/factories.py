"""Test data built through the product's own actions: a filed case is what `storage.actions.submit_report`
writes when a resident submits, so tests see what production sees."""

from __future__ import annotations

import io
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from console.auth import SESSION_COOKIE, cookie_serializer
from console.context import ConsoleContext
from handlers.routing import RouteDecision
from handlers.types import Outbound
from nlp.search import index_terms
from storage import actions, staff_actions
from storage.models import Case, StaffRole, StaffUser

SECRET_KEY = b"k" * 32
"""The receipt-code key of cases filed by `file_case` (pass another to match a service's settings)."""

DEFAULT_DESCRIPTION = "窗口工作人员擅离岗位两个小时，群众排队无人办理。"


async def file_case(
    session: AsyncSession,
    *,
    channel: str = "telegram",
    reporter_ref: str = "42",
    locale: str = "zh",
    district: str | None = "yuelu",
    place: str = "岳麓区政务服务中心",
    occurred: str = "今天",
    description: str = DEFAULT_DESCRIPTION,
    anonymous: bool = True,
    reporter_name: str | None = None,
    reporter_phone: str | None = None,
    attachment_ids: Sequence[int] = (),
    queue: str = "clean_hall",
    reason: str = "label",
    label: str | None = "slow_service",
    confidence: float | None = 0.9,
    top: list[Any] | None = None,
    terms: list[Any] | None = None,
    model_version: str | None = "test-model-1",
    runner_up: str | None = None,
    contrast_terms: list[Any] | None = None,
    accept_due_at: datetime | None = None,
    resolve_due_at: datetime | None = None,
    staff_targets: Sequence[tuple[str, str]] = (),
    secret_key: bytes = SECRET_KEY,
    case_number_prefix: str = "QL",
    year: int = 2026,
    now: datetime | None = None,
    client_key: str | None = None,
) -> tuple[Case, str]:
    """A submitted, routed case; returns it (with its trace loaded) and its receipt code."""
    report = actions.NewReport(
        channel=channel, reporter_ref=reporter_ref, locale=locale, district=district, place=place,
        occurred=occurred, description=description, anonymous=anonymous, reporter_name=reporter_name,
        reporter_phone=reporter_phone, attachment_ids=attachment_ids,
    )
    if top is None and label is not None and confidence is not None:
        top = [[label, confidence], ["other", round(1 - confidence, 4)]]
    routing = actions.Routing(
        queue=queue, reason=reason, label=label, confidence=confidence if label else None, top=top,
        terms=terms, model_version=model_version if label else None, runner_up=runner_up if label else None,
        contrast_terms=contrast_terms if label else None, accept_due_at=accept_due_at,
        resolve_due_at=resolve_due_at, staff_targets=staff_targets,
    )
    submitted = await actions.submit_report(
        session, report, routing, secret_key=secret_key, case_number_prefix=case_number_prefix, year=year,
        staff_locale="zh", now=now, client_key=client_key, search_terms=index_terms([place, description]),
    )
    case = await actions.get_case(session, submitted.case_id)
    assert case is not None
    return case, submitted.receipt_code


def one_payload_each(messages: list[Outbound]) -> list[dict[str, object]]:
    """A `handlers.types.Packer` that stores each of a step's replies as a payload of its own, in order (as a channel
    without a packing of its own would)."""
    return [message.to_payload() for message in messages]


def decided(decision: RouteDecision) -> dict[str, Any]:
    """`file_case`'s routing arguments for a decision of `handlers.routing.route`."""
    routing = decision.as_routing()
    return {"queue": routing.queue, "reason": routing.reason, "label": routing.label,
            "confidence": routing.confidence, "top": routing.top or [], "terms": routing.terms,
            "model_version": routing.model_version, "runner_up": routing.runner_up,
            "contrast_terms": routing.contrast_terms, "accept_due_at": routing.accept_due_at,
            "resolve_due_at": routing.resolve_due_at, "staff_targets": routing.staff_targets}


async def create_staff(session: AsyncSession, username: str, role: StaffRole = StaffRole.REVIEWER,
                       queues: Sequence[str] = (), *, password_hash: str = "not-a-hash", active: bool = True,
                       actor: StaffUser | None = None) -> StaffUser:
    """A staff account working in `queues`, made by `storage.staff_actions` as the console makes one (the
    default password hash opens no login: tests that log in through the form pass a real one)."""
    user = await staff_actions.create_staff(session, username=username, display_name=f"{username} 同志", role=role,
                                            password_hash=password_hash, actor=actor)
    await staff_actions.set_queues(session, user, list(queues), actor=actor)
    if not active:
        await staff_actions.set_active(session, user, False, actor=actor)
    return user


async def console_session(context: ConsoleContext, user: StaffUser, *, second_factor_done: bool = True,
                          hours: float = 8.0) -> tuple[dict[str, str], str]:
    """A console login of `user` as the login page leaves it: (the signed session cookie, its CSRF token)."""
    async with context.database.sessionmaker.begin() as session:
        token, record = await staff_actions.start_session(session, user, hours=hours, ip=None,
                                                          second_factor_done=second_factor_done)
    return {SESSION_COOKIE: cookie_serializer(context).dumps(token)}, record.csrf_token


# --- images a resident's phone or editor would send ------------------------------------------------------------

HIDDEN_WORDS = ("ZHANG Wei", "13912345678", "LI Na", "13800001111", "SN-4711-0815", "28.228", "112.938")
"""Words hidden in `photo_with_metadata` and `png_with_text`: none may be left in what is stored or served."""


def photo_with_metadata(width: int = 640, height: int = 480, *, orientation: int = 6) -> bytes:
    """A JPEG as a phone writes it: `width` × `height` pixels stored sideways, EXIF orientation `orientation`
    (6: turn 90° clockwise to show it), GPS position, camera serial number and owner, artist, copyright, a
    description with a phone number, XMP and a JPEG comment. Its left half is red, its right half blue."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (220, 20, 20))
    image.paste((20, 20, 220), (width // 2, 0, width, height))
    exif = Image.Exif()
    exif[0x0112] = orientation
    exif[0x013B] = "ZHANG Wei"  # Artist
    exif[0x8298] = "Copyright ZHANG Wei"
    exif[0x010E] = "ZHANG Wei 13912345678"  # ImageDescription
    exif[0x010F], exif[0x0110] = "PhoneMaker", "Model X"
    camera = exif.get_ifd(0x8769)
    camera[0xA430] = "ZHANG Wei"  # CameraOwnerName
    camera[0xA431] = "SN-4711-0815"  # BodySerialNumber
    gps = exif.get_ifd(0x8825)
    gps[1], gps[2] = "N", (28.0, 13.0, 41.0)  # 28.228 N
    gps[3], gps[4] = "E", (112.0, 56.0, 17.0)  # 112.938 E
    gps[0x001B] = "ASCII\x00\x00\x0028.228,112.938"  # GPSProcessingMethod, the position again as text
    xmp = (b'<x:xmpmeta xmlns:x="adobe:ns:meta/"><rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#">'
           b'<rdf:Description xmlns:dc="http://purl.org/dc/elements/1.1/" dc:creator="ZHANG Wei"/></rdf:RDF>'
           b'</x:xmpmeta>')
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=90, exif=exif, comment="ZHANG Wei 13912345678", xmp=xmp)
    return out.getvalue()


def png_with_text(width: int = 300, height: int = 200) -> bytes:
    """A PNG (grey noise, with an alpha channel) with text chunks naming its author (tEXt, zTXt, iTXt) and EXIF
    in an eXIf chunk."""
    from PIL import Image, PngImagePlugin

    image = Image.effect_noise((width, height), 40).convert("RGBA")
    text = PngImagePlugin.PngInfo()
    text.add_text("Author", "LI Na 13800001111")
    text.add_text("Comment", "LI Na 13800001111", zip=True)
    text.add_itxt("Description", "LI Na 13800001111", lang="zh", tkey="说明")
    exif = Image.Exif()
    exif[0x013B] = "LI Na"
    out = io.BytesIO()
    image.save(out, format="PNG", pnginfo=text, exif=exif)
    return out.getvalue()


def plain_photo(width: int = 160, height: int = 120, *, shade: int = 0, media_type: str = "image/jpeg") -> bytes:
    """A small valid image without metadata (its colour from `shade`, so two files differ)."""
    from PIL import Image

    image = Image.new("RGB", (width, height), (shade % 256, 90, 200))
    out = io.BytesIO()
    image.save(out, format={"image/jpeg": "JPEG", "image/png": "PNG", "image/gif": "GIF",
                            "image/webp": "WEBP"}[media_type])
    return out.getvalue()


def hidden_words_in(content: bytes) -> list[str]:
    """Which of `HIDDEN_WORDS` (and the XMP and EXIF markers) are in the bytes of a file."""
    markers = [*HIDDEN_WORDS, "Exif\x00\x00", "adobe:ns:meta", "tEXt", "zTXt", "iTXt", "eXIf"]
    return [marker for marker in markers if marker.encode() in content or marker.encode("utf-16-le") in content]


def picture_of(content: bytes) -> tuple[str | None, tuple[int, int]]:
    """An image file's format and size: what a re-encoded copy keeps of the picture sent."""
    from PIL import Image

    with Image.open(io.BytesIO(content)) as image:
        return image.format, image.size


# --- PDF documents a resident's office software would send -----------------------------------------------------

PDF_HIDDEN_WORDS = ("张伟", "13912345678", "ZHANG Wei", "Zhangs-Laptop")
"""Words hidden in `pdf_with_metadata`'s document information and XMP: none may be left in what is served."""


def plain_pdf(lines: Sequence[str] = ("Receipt 0042",), *, pages: int = 1, filler: int = 0) -> bytes:
    """A valid PDF of `pages` pages, each showing `lines` (ASCII, Helvetica) and its page number, written by
    pypdf without any metadata; `filler` bytes of a PDF comment in the first page's content make it larger."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import DecodedStreamObject, DictionaryObject, NameObject

    writer = PdfWriter()
    font = DictionaryObject({NameObject("/Type"): NameObject("/Font"), NameObject("/Subtype"): NameObject("/Type1"),
                             NameObject("/BaseFont"): NameObject("/Helvetica")})
    font_reference = writer._add_object(font)
    for number in range(1, pages + 1):
        page = writer.add_blank_page(300, 200)
        shown = [*lines, f"Page {number}"]
        text = "".join(f"BT /F1 12 Tf 20 {170 - 20 * row} Td ({line}) Tj ET\n" for row, line in enumerate(shown))
        if number == 1 and filler:
            text += "%" + "x" * filler + "\n"
        content = DecodedStreamObject()
        content.set_data(text.encode("ascii"))
        page[NameObject("/Contents")] = writer._add_object(content)
        page[NameObject("/Resources")] = DictionaryObject({NameObject("/Font"): DictionaryObject(
            {NameObject("/F1"): font_reference})})
    built = io.BytesIO()
    writer.write(built)
    copy = PdfWriter()  # the pages copied into a new document, as pypdf writes them: cleaning it changes no byte
    for page in PdfReader(built).pages:
        copy.add_page(page)
    copy.metadata = None
    out = io.BytesIO()
    copy.write(out)
    return out.getvalue()


def pdf_of_size(size: int, lines: Sequence[str] = ("Receipt 0042",)) -> bytes:
    """`plain_pdf` of exactly `size` bytes (at least about 700)."""
    filler = max(0, size - len(plain_pdf(lines)))
    while len(content := plain_pdf(lines, filler=filler)) != size:
        if filler == 0 and len(content) > size:
            raise ValueError(f"a PDF showing {lines!r} has more than {size} bytes")
        filler += size - len(content)
    return content


def pdf_with_metadata(lines: Sequence[str] = ("Receipt 0042",), *, pages: int = 2) -> bytes:
    """`plain_pdf` as office software writes it: a document information dictionary naming the author (张伟), a
    title with a phone number, the creator tool, the computer's name and dates, and XMP metadata saying the same,
    for the document and its first page."""
    from pypdf import PdfReader, PdfWriter
    from pypdf.generic import NameObject

    writer = PdfWriter(clone_from=PdfReader(io.BytesIO(plain_pdf(lines, pages=pages))))
    writer.add_metadata({"/Author": "张伟", "/Title": "举报材料 张伟 13912345678",
                         "/Subject": "ZHANG Wei", "/Creator": "WPS Office on Zhangs-Laptop",
                         "/Producer": "Zhangs-Laptop PDF printer", "/CreationDate": "D:20261120093000+08'00'",
                         "/ModDate": "D:20261120093000+08'00'"})
    xmp = ('<?xpacket begin="" id="W5M0MpCehiHzreSzNTczkc9d"?><x:xmpmeta xmlns:x="adobe:ns:meta/">'
           '<rdf:RDF xmlns:rdf="http://www.w3.org/1999/02/22-rdf-syntax-ns#"><rdf:Description rdf:about="" '
           'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:xmp="http://ns.adobe.com/xap/1.0/">'
           '<dc:creator><rdf:Seq><rdf:li>张伟</rdf:li></rdf:Seq></dc:creator>'
           '<dc:description><rdf:Alt><rdf:li xml:lang="x-default">ZHANG Wei 13912345678</rdf:li></rdf:Alt>'
           '</dc:description><xmp:CreatorTool>WPS Office on Zhangs-Laptop</xmp:CreatorTool></rdf:Description>'
           '</rdf:RDF></x:xmpmeta><?xpacket end="w"?>').encode()
    writer.xmp_metadata = xmp
    document_xmp = writer.root_object["/Metadata"].get_object()
    assert document_xmp is not None
    writer.pages[0][NameObject("/Metadata")] = writer._add_object(document_xmp.clone(writer))
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def pdf_facts(content: bytes) -> tuple[int, list[str], dict[str, Any] | None, bool, list[str]]:
    """What a PDF shows and hides: its page count, the text of each page, its document information dictionary,
    whether it has XMP metadata (for the document or any page), and which `PDF_HIDDEN_WORDS` its bytes hold."""
    from pypdf import PdfReader

    reader = PdfReader(io.BytesIO(content))
    information = None if reader.metadata is None else dict(reader.metadata)
    has_xmp = "/Metadata" in reader.root_object or any("/Metadata" in page for page in reader.pages)
    texts = [page.extract_text() for page in reader.pages]
    hidden = [word for word in PDF_HIDDEN_WORDS
              if any(form in content for form in (word.encode(), word.encode("utf-16-be")))]
    return len(reader.pages), texts, information, has_xmp, hidden
