"""WeChat's callback signatures and safe-mode encryption (AES-256-CBC with the EncodingAESKey)."""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import struct

from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.config import ConfigError

# --- signatures and safe-mode encryption --------------------------------------------------------


def signature(*parts: str) -> str:
    """WeChat's signature: SHA-1 of the parts (token, timestamp, nonce[, Encrypt]) sorted and joined."""
    return hashlib.sha1("".join(sorted(parts)).encode()).hexdigest()


def signature_matches(given: str | None, *parts: str) -> bool:
    return bool(given) and hmac.compare_digest(str(given).lower().encode(), signature(*parts).encode())


class WeChatCrypto:
    """Safe-mode message encryption (WeChat's WXBizMsgCrypt scheme).

    The key is the 43-character EncodingAESKey plus "=" base64-decoded (32 bytes), the IV its first
    16 bytes; the plaintext is 16 random bytes, the message length as 4 bytes in network order, the
    message and the app id, PKCS#7-padded to a multiple of 32 bytes; AES-256-CBC, then base64.
    """

    BLOCK = 32

    def __init__(self, encoding_aes_key: str, app_id: str) -> None:
        try:
            key = base64.b64decode(encoding_aes_key + "=", validate=True)
        except ValueError:  # not base64, or a character outside ASCII (a full-width letter pasted in)
            raise ConfigError("QINGLIAN_WECHAT_AES_KEY is not a valid EncodingAESKey") from None
        if len(key) != 32:
            raise ConfigError("QINGLIAN_WECHAT_AES_KEY is not a valid EncodingAESKey")
        self._key = key
        self.app_id = app_id

    def _cipher(self) -> Cipher[modes.CBC]:
        return Cipher(algorithms.AES(self._key), modes.CBC(self._key[:16]))

    def encrypt(self, message: str, random_prefix: bytes | None = None) -> str:
        prefix = random_prefix if random_prefix is not None else secrets.token_bytes(16)
        body = message.encode()
        plain = prefix + struct.pack(">I", len(body)) + body + self.app_id.encode()
        pad = self.BLOCK - len(plain) % self.BLOCK
        plain += bytes([pad]) * pad
        encryptor = self._cipher().encryptor()
        return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()

    def decrypt(self, encrypted: str) -> tuple[str, str]:
        """(message, app id) of an `Encrypt` value; `ValueError` if it is not one."""
        try:
            data = base64.b64decode(encrypted, validate=True)
        except ValueError:
            raise ValueError("Encrypt is not base64") from None
        if not data or len(data) % 16:
            raise ValueError("Encrypt is not whole AES blocks")
        decryptor = self._cipher().decryptor()
        plain = decryptor.update(data) + decryptor.finalize()
        pad = plain[-1]
        if not 1 <= pad <= self.BLOCK or plain[-pad:] != bytes([pad]) * pad:
            raise ValueError("bad padding")
        content = plain[16:-pad]
        if len(content) < 4:
            raise ValueError("too short")
        (length,) = struct.unpack(">I", content[:4])
        if 4 + length > len(content):
            raise ValueError("length field beyond the message")
        try:
            return content[4 : 4 + length].decode(), content[4 + length :].decode()
        except UnicodeDecodeError:
            raise ValueError("not UTF-8") from None
