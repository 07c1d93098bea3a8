"""WeChat's wire formats for the stand-in, written from WeChat's specification independently of
``bot.channels.wechat`` so the two implementations check each other.

* Message signature: SHA-1 of token, timestamp and nonce (plus ``Encrypt`` in safe mode) sorted and
  joined (公众号 "消息加解密说明" / server configuration guide).
* Safe mode: AES-256-CBC with the 43-character EncodingAESKey (+ "=") as key and its first 16 bytes as
  IV; plaintext = 16 random bytes, 4-byte big-endian length, message, app id; PKCS#7 padding to 32 bytes.
* Callback XML: ``<xml>`` with CDATA strings and bare integers, as WeChat posts it.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import struct
import time
import xml.etree.ElementTree as ET
from collections.abc import Mapping

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

SERVICE_UNAVAILABLE = "该公众号暂时无法提供服务，请稍后再试"
MAX_TEXT_BYTES = 2048


# --- WeChat's crypto, from the specification --------------------------------------------------


def sha1_signature(*parts: str) -> str:
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def aes_key(encoding_aes_key: str) -> bytes:
    return base64.b64decode(encoding_aes_key + "=")


def encrypt(encoding_aes_key: str, app_id: str, message: str) -> str:
    key = aes_key(encoding_aes_key)
    body = message.encode()
    plain = secrets.token_bytes(16) + struct.pack("!I", len(body)) + body + app_id.encode()
    padder = padding.PKCS7(256).padder()  # 32-byte blocks, as WeChat pads
    padded = padder.update(plain) + padder.finalize()
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(padded) + encryptor.finalize()).decode()


def decrypt(encoding_aes_key: str, encrypted: str) -> tuple[str, str]:
    """(message, app id); raises ValueError for anything that is not WeChat's format."""
    key = aes_key(encoding_aes_key)
    decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
    padded = decryptor.update(base64.b64decode(encrypted, validate=True)) + decryptor.finalize()
    unpadder = padding.PKCS7(256).unpadder()
    plain = unpadder.update(padded) + unpadder.finalize()
    length = struct.unpack("!I", plain[16:20])[0]
    return plain[20 : 20 + length].decode(), plain[20 + length :].decode()


FieldValue = str | int | list[dict[str, str | int]]
"""A callback field: text (CDATA), an integer, or a list of ``<List>`` items (subscription events)."""


def message_xml(fields: Mapping[str, FieldValue]) -> str:
    parts = []
    for name, value in fields.items():
        if isinstance(value, list):
            inner = "".join(f"<List>{message_xml(item)[5:-6]}</List>" for item in value)
        else:
            inner = str(value) if isinstance(value, int) else f"<![CDATA[{value}]]>"
        parts.append(f"<{name}>{inner}</{name}>")
    return "<xml>" + "".join(parts) + "</xml>"


def build_callback(fields: Mapping[str, FieldValue], *, token: str, mode: str = "plaintext",
                   encoding_aes_key: str | None = None, app_id: str | None = None,
                   timestamp: str | None = None, nonce: str | None = None) -> tuple[dict[str, str], bytes]:
    """The query string and body WeChat POSTs for one message (mode: plaintext, safe or compat)."""
    timestamp = timestamp or str(int(time.time()))
    nonce = nonce or str(secrets.randbelow(10**10))
    params = {"signature": sha1_signature(token, timestamp, nonce), "timestamp": timestamp, "nonce": nonce,
              "openid": str(fields.get("FromUserName", ""))}
    plain = message_xml(fields)
    if mode == "plaintext":
        return params, plain.encode()
    assert encoding_aes_key and app_id, "safe mode needs the EncodingAESKey and the app id"
    encrypted = encrypt(encoding_aes_key, app_id, plain)
    params.update(encrypt_type="aes", msg_signature=sha1_signature(token, timestamp, nonce, encrypted))
    outer: dict[str, FieldValue] = {"ToUserName": fields.get("ToUserName", ""), "Encrypt": encrypted}
    if mode == "compat":
        outer = {**fields, "Encrypt": encrypted}
    return params, message_xml(outer).encode()


class ReplyProblem(ValueError):
    pass


def open_reply(body: str, *, token: str, safe: bool, encoding_aes_key: str | None = None,
               app_id: str | None = None) -> dict[str, str]:
    """The fields of a passive reply, checked as WeChat checks it; ReplyProblem says what is wrong."""
    try:
        root = ET.fromstring(body)
    except ET.ParseError as problem:
        raise ReplyProblem(f"reply is not XML: {problem}") from None
    fields = {child.tag: child.text or "" for child in root}
    if safe:
        if "Encrypt" not in fields:
            raise ReplyProblem("plaintext reply to a safe-mode message")
        for name in ("MsgSignature", "TimeStamp", "Nonce"):
            if not fields.get(name):
                raise ReplyProblem(f"encrypted reply without {name}")
        expected = sha1_signature(token, fields["TimeStamp"], fields["Nonce"], fields["Encrypt"])
        if fields["MsgSignature"] != expected:
            raise ReplyProblem("reply MsgSignature does not match")
        assert encoding_aes_key is not None
        try:
            inner, reply_app_id = decrypt(encoding_aes_key, fields["Encrypt"])
        except (ValueError, struct.error) as problem:
            raise ReplyProblem(f"reply does not decrypt: {problem}") from None
        if reply_app_id != app_id:
            raise ReplyProblem(f"reply encrypted for app id {reply_app_id!r}")
        return open_reply(inner, token=token, safe=False)
    return fields
