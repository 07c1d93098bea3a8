"""Receipt codes: 16 random digits, shown once, stored only as a keyed hash."""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import unicodedata

RECEIPT_DIGITS = 16
_SEPARATOR = r"\s\-_.,、·・‐‑‒–—―−"
"""What residents put between the groups: spaces, dots, commas (a Chinese keyboard's "，" is "," after NFKC, and
"、") and every dash a keyboard makes. Only between digits: an amount "1,234" in a text is far from 16 digits."""
_SEPARATORS = re.compile(rf"[{_SEPARATOR}]+")
_DIGIT_RUN = re.compile(rf"[0-9](?:[{_SEPARATOR}]*[0-9])*")
MAX_WORDS_AROUND_CODE = 20
"""Letters and digits a message may hold besides its receipt code and still be read as that code."""


def new_receipt_code() -> str:
    return f"{secrets.randbelow(10**RECEIPT_DIGITS):0{RECEIPT_DIGITS}d}"


def format_receipt_code(code: str) -> str:
    return " ".join(code[i : i + 4] for i in range(0, RECEIPT_DIGITS, 4))


def parse_receipt_code(text: str) -> str | None:
    """The 16 digits of a code typed with or without spaces or dashes, alone or with a few words around it
    ("查询码：1074 8690 3250 1520", "my code is …"); None if it is not one. A longer text that happens to hold 16
    digits (a card number in a description) is not taken for a code."""
    # NFKC: full-width digits, hyphens and spaces as their plain forms (only ASCII digits make a code)
    normalised = unicodedata.normalize("NFKC", text).strip()
    runs = [run for run in _DIGIT_RUN.findall(normalised) if len(_SEPARATORS.sub("", run)) == RECEIPT_DIGITS]
    if len(runs) != 1:
        return None
    words = normalised.replace(runs[0], "", 1)
    if sum(1 for ch in words if ch.isalnum()) > MAX_WORDS_AROUND_CODE:
        return None
    return _SEPARATORS.sub("", runs[0])


def receipt_code_hash(secret_key: bytes, code: str) -> str:
    return hmac.new(secret_key, b"receipt:" + code.encode(), hashlib.sha256).hexdigest()

