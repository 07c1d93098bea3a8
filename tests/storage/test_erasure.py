"""What the retention takes out of a case's texts (`storage.erasure.OwnContact`): the real-name reporter's own name
and phone as people write them, and nothing else."""

from __future__ import annotations

import pytest

from storage.erasure import ERASED_TEXT, OwnContact

GONE = ERASED_TEXT


@pytest.mark.parametrize(("text", "scrubbed"), [
    ("请打13812345678找我", f"请打{GONE}找我"),
    ("请打 138 1234 5678 找我", f"请打 {GONE} 找我"),
    ("电话：138-1234-5678。", f"电话：{GONE}。"),
    ("电话+86 138 1234 5678", f"电话{GONE}"),
    ("电话 ＋８６ １３８１２３４５６７８", f"电话 {GONE}"),
    ("（13812345678）", f"（{GONE}）"),
    ("打了13812345678 3次都没人接", f"打了{GONE} 3次都没人接"),  # a number typed right after it is not part of it
    ("两次：13812345678，13812345678", f"两次：{GONE}，{GONE}"),
    ("工号913812345678不是她的电话", "工号913812345678不是她的电话"),  # inside a longer number
    ("窗口电话13812345679", "窗口电话13812345679"),  # one digit off: another number
    ("我王秀英跑了三趟，王秀英的母亲也去了", f"我{GONE}跑了三趟，{GONE}的母亲也去了"),
])
def test_the_name_and_the_phone_as_people_write_them_and_nothing_else(text: str, scrubbed: str) -> None:
    contact = OwnContact.of("王秀英", "13812345678")
    assert contact is not None
    assert contact.scrub(text) == scrubbed


def test_a_name_or_number_too_short_to_tell_from_other_words_is_left() -> None:
    assert OwnContact.of("王", "12345") is None  # one character, five digits: they would erase other words
    only_phone = OwnContact.of("王", "+86 138 1234 5678")
    assert only_phone is not None and only_phone.scrub("王师傅打13812345678") == f"王师傅打{GONE}"
