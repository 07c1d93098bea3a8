"""Receipt codes: 16 random digits, shown once, stored only as a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

RECEIPT_DIGITS = 16
_SEPARATORS = re.compile(r"[\s\-_.·]+")


def new_receipt_code() -> str:
    return f"{secrets.randbelow(10**RECEIPT_DIGITS):0{RECEIPT_DIGITS}d}"


def format_receipt_code(code: str) -> str:
    return " ".join(code[i : i + 4] for i in range(0, RECEIPT_DIGITS, 4))


def parse_receipt_code(text: str) -> str | None:
    """The 16 digits of a code typed with or without spaces or dashes; None if it is not one."""
    digits = _SEPARATORS.sub("", text.strip().translate(_FULLWIDTH_DIGITS))
    if len(digits) == RECEIPT_DIGITS and digits.isascii() and digits.isdigit():
        return digits
    return None


def receipt_code_hash(secret_key: bytes, code: str) -> str:
    return hmac.new(secret_key, b"receipt:" + code.encode(), hashlib.sha256).hexdigest()


_FULLWIDTH_DIGITS = str.maketrans("０１２３４５６７８９", "0123456789")
