"""Evidence files at the wizard's evidence step, through `dialog.handle`: what is stored (by the file's real
type, under a name of our own), what is refused and whether it was downloaded at all, and the quotas."""

from __future__ import annotations

import hashlib
import re
from typing import Any

import pytest
from sqlalchemy import select

from handlers import dialog
from handlers.types import Attachment, AttachmentKind, Inbound
from storage.models import Attachment as StoredAttachment
from tests.conftest import evidence_content
from tests.handlers.conftest import JPEG, DialogHarness

PNG = b"\x89PNG\r\n\x1a\n" + b"\x00" * 500
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

    assert answer.startswith("已收到第 1 个文件（最多5个）。")
    [stored] = await _stored(harness)
    assert (stored.media_type, stored.original_name, stored.size_bytes, stored.sha256) == (
        "image/png", "证据gpj.exe", len(PNG), hashlib.sha256(PNG).hexdigest())
    assert re.fullmatch(r"2026/11/[0-9a-f]{32}\.png", stored.stored_name)
    assert evidence_content(harness.context.evidence_dir, stored.stored_name) == PNG
    assert download.calls == 1


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
    assert again.startswith("已收到第 1 个文件（最多5个）。")


async def test_files_relayed_by_a_platform_server_do_not_share_one_addresss_quota(small_files: DialogHarness) -> None:
    photo = JPEG + b"\x00" * 1000  # 1,204 bytes: two of them from one address exceed its 1,500
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
        "已收到第 1 个文件（最多5个）。", "已收到第 1 个文件（最多5个）。", "已收到第 1 个文件（最多5个）。",
        "您所在网络上传的证据文件已达上限，这个文件没有接收，请提交或取消已有的举报后再试。"]
    assert len(_files(small_files)) == 3
