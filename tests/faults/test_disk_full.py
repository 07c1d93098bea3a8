"""The database's disk full while Telegram residents write, in long polling: the operator reads one line saying
what is full and what to do, the resident is told at once that their message waits, and no update is lost — it
stays with Telegram and is handled when there is room again."""

from __future__ import annotations

import errno
import re
import subprocess
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.channels.test_telegram import Chat
from tests.conftest import LiveService, evidence_unwritable, full_filesystem, inside
from tests.factories import plain_photo
from tests.faults.conftest import service_env, texts_with
from tests.standins.telegram_server import TelegramStandIn

CANNOT_STORE = "暂时无法保存"


@contextmanager
def filled(disk: Path) -> Iterator[None]:
    """Fill `disk` to its last block for the duration; the room comes back after."""
    filler = disk / "filler"
    try:
        with filler.open("wb") as out:
            while True:
                out.write(b"\0" * 65536)
                out.flush()
    except OSError as problem:
        assert problem.errno == errno.ENOSPC, problem
    try:
        yield
    finally:
        filler.unlink()


def test_a_full_database_disk_keeps_the_update_with_telegram_tells_the_resident_and_logs_one_line(
        telegram: TelegramStandIn, tmp_path: Path, services: Callable[..., LiveService]) -> None:
    with full_filesystem(tmp_path / "disk", size="32m") as full:
        (full / "filler").unlink()  # room to create and migrate the database
        database = tmp_path / "disk" / "qinglian.db"  # where the service, in the full disk's namespace, has it
        service = services(tmp_path / "service", service_env(f"sqlite+aiosqlite:///{database}", telegram=telegram))
        service.launcher = inside(full)
        service.start()
        chat = Chat(telegram, 7301)
        report = telegram.send_text(chat.chat_id, "/report")
        chat.expect("第1步")
        telegram.wait_until(lambda: telegram.pending_update_count() == 0, what="every update handled")
        # the WAL emptied, so that the next write needs new blocks rather than reusing the WAL's
        subprocess.run([*inside(full), sys.executable, "-c", "import sqlite3, sys; "
                        "sqlite3.connect(sys.argv[1]).execute('PRAGMA wal_checkpoint(TRUNCATE)')", str(database)],
                       check=True)
        logged = len(service.log())
        with filled(full):
            pressed = telegram.press_button(chat.chat_id, "district:yuelu")
            told = chat.expect(CANNOT_STORE)
            # a message edited meanwhile comes after the kept update, again with it on every try: answered once
            reported = telegram.update(report)["message"]["message_id"]
            telegram.edit_text(chat.chat_id, reported, "/report 岳麓区")
            chat.expect("您修改了一条已发送的消息")
            # the bot keeps asking Telegram for it, and Telegram keeps it
            polls = len(telegram.requests_for("getUpdates"))
            telegram.wait_until(lambda: len(telegram.requests_for("getUpdates")) >= polls + 2, timeout=30,
                                what="getUpdates called again while the disk is full")
            assert not telegram.is_confirmed(pressed)
            assert texts_with(chat, "第2步") == []
            log = service.log()[logged:]
        assert told == ("抱歉，系统暂时无法保存您的消息（服务器存储空间不足）。您的消息没有丢失，"
                        "恢复后会自动处理，无需重复发送。")
        assert "Traceback" not in log, log
        [line] = [line for line in log.splitlines() if "bot.channels.telegram" in line]
        assert line.endswith(f"ERROR bot.channels.telegram: telegram: update {pressed} and the ones after it stay with "
                             "Telegram, fetched again every 5 s until they can be stored: the database "
                             f"sqlite+aiosqlite:///{database} cannot write, its disk is full (OperationalError): free "
                             "space where the database keeps its files"), line
        chat.expect("第2步", timeout=60)  # handled once there is room, without the resident sending it again
        telegram.wait_until(lambda: telegram.pending_update_count() == 0, what="every update handled")
        assert telegram.is_confirmed(pressed)
        assert len(texts_with(chat, "第2步")) == 1 and len(texts_with(chat, CANNOT_STORE)) == 1
        assert len(texts_with(chat, "您修改了一条已发送的消息")) == 1
        chat.say("岳麓区政务服务中心", expect="第3步")
        assert "telegram: updates are stored again (1 were kept with Telegram meanwhile)" in service.log()


@pytest.mark.parametrize("webhook", [False, True], ids=["polling", "webhook"])
def test_a_photo_the_full_evidence_directory_cannot_take_is_kept_with_telegram_and_stored_later(
        telegram: TelegramStandIn, tmp_path: Path, services: Callable[..., LiveService], webhook: bool) -> None:
    """The data directory's disk full (the database elsewhere): the evidence photo's file cannot be written. The log
    names the file and what to free; the photo is stored once there is room, without the resident sending it again.
    A webhook's delivery is answered 503, which Telegram delivers again (it was a 500 and a traceback)."""
    service = services(tmp_path / "service", service_env(None, telegram=telegram), webhook=webhook)
    service.start()
    chat = Chat(telegram, 7302)
    to_the_evidence_step(chat)
    logged = len(service.log())
    with full_filesystem(tmp_path / "disk") as full, evidence_unwritable(service.data_dir, full) as evidence:
        sent = telegram.send_photo(chat.chat_id, plain_photo(64, 48))
        told = chat.expect(CANNOT_STORE)
        assert not telegram.is_confirmed(sent)
        log = service.log()[logged:]
    assert "Traceback" not in log, log
    [line] = [line for line in log.splitlines() if "bot.channels.telegram" in line]
    kept = ("stays with Telegram, which delivers it again until it can be stored" if webhook
            else "and the ones after it stay with Telegram, fetched again every 5 s until they can be stored")
    assert re.search(rf"ERROR bot.channels.telegram: telegram: update {sent} {kept}: {re.escape(str(evidence))}/\S+ "
                     r"cannot be written \(No space left on device\): free space in the data directory$", line), line
    assert told.startswith("抱歉，系统暂时无法保存您的消息")
    chat.expect("已收到第 1 个文件", timeout=60)
    telegram.wait_until(lambda: telegram.is_confirmed(sent), what="the photo's update acknowledged")
    assert len(texts_with(chat, "已收到第 1 个文件")) == 1 and len(texts_with(chat, CANNOT_STORE)) == 1


def to_the_evidence_step(chat: Chat) -> None:
    """A Telegram resident at the evidence step of a report."""
    chat.say("/report", expect="第1步")
    chat.press("district:yuelu", expect="第2步")
    chat.say("岳麓区政务服务中心3号窗口", expect="第3步")
    chat.press("when:today", expect="第4步")
    chat.say("窗口工作人员上班时间一直玩手机，让群众排队等了两个小时。", expect="第5步")
