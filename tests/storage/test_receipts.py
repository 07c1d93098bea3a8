"""Receipt codes: how they are made, typed back and kept (only as a keyed hash)."""

from __future__ import annotations

import pytest

from storage.receipts import format_receipt_code, new_receipt_code, parse_receipt_code, receipt_code_hash


def test_new_codes_are_sixteen_digits_with_their_leading_zeros() -> None:
    codes = {new_receipt_code() for _ in range(200)}
    assert len(codes) == 200
    assert all(len(code) == 16 and code.isascii() and code.isdigit() for code in codes)
    assert format_receipt_code("0000000000000042") == "0000 0000 0000 0042"


@pytest.mark.parametrize(("typed", "code"), [
    ("1234·5678·9012·3456", "1234567890123456"),
    ("1234.5678.9012.3456", "1234567890123456"),
    ("  1234_5678 -9012\t3456 ", "1234567890123456"),
    ("１２３４ ５６７８ ９０１２ ３４５６", "1234567890123456"),
    ("3969－3761－9271－0542", "3969376192710542"),  # a Chinese keyboard's full-width hyphen
    ("1234—5678—9012—3456", "1234567890123456"),  # an em dash, as a phone's keyboard replaces "--"
    ("1234–5678–9012–3456", "1234567890123456"),  # an en dash
    ("1234・5678・9012・3456", "1234567890123456"),  # a Japanese keyboard's middle dot
    ("1234　5678　9012　3456", "1234567890123456"),  # ideographic spaces
    ("查询码：6438，6681，3571，7533。", "6438668135717533"),  # a Chinese keyboard's commas
    ("6438、6681、3571、7533", "6438668135717533"),
    ("罚款1,234元，另收了2,000元", None),  # amounts are not a code
    ("١٢٣٤٥٦٧٨٩٠١٢٣٤٥٦", None),  # Arabic-Indic digits are digits, but not a code anyone was given
    ("1234 5678 9012 345O", None),
    ("", None),
    ("查询码：1234 5678 9012 3456", "1234567890123456"),  # a few words around it, as residents paste it
    ("my code is 1234-5678-9012-3456, thanks", "1234567890123456"),
    ("1234 5678 9012 3456 7", None),  # seventeen digits
    ("7 1234 5678 9012 3456", None),
    ("1234567890123456 6543210987654321", None),  # two codes: which one?
    ("窗口人员让我把银行卡号6222021234567890告诉他，然后让我转账了好几次，一共五千元", None),  # a description
])
def test_a_code_is_read_however_the_resident_separated_it(typed: str, code: str | None) -> None:
    assert parse_receipt_code(typed) == code


def test_a_code_is_kept_as_a_hash_that_needs_the_services_key() -> None:
    code = "1234567890123456"
    kept = receipt_code_hash(b"k" * 32, code)
    assert kept == receipt_code_hash(b"k" * 32, code)
    assert code not in kept and len(kept) == 64
    assert kept != receipt_code_hash(b"j" * 32, code)
    assert kept != receipt_code_hash(b"k" * 32, "1234567890123457")
