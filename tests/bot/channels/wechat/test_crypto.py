"""WeChat's callback signatures and safe-mode encryption ("安全模式"), checked against the published protocol with the
`cryptography` primitives directly: the SHA-1 signature over the sorted token, timestamp, nonce (and Encrypt); the
EncodingAESKey as a 32-byte AES key whose first 16 bytes are the IV; the plaintext laid out as 16 random bytes, the
message length in network order, the message and the AppID, PKCS#7-padded to 32 bytes. Keys that are not an
EncodingAESKey, ciphertexts that are not a message, a tampered Encrypt and a foreign AppID are refused or shown."""

from __future__ import annotations

import base64
import hashlib

import pytest
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from bot.channels.wechat.crypto import WeChatCrypto, signature, signature_matches
from bot.config import ConfigError

KEY = bytes(range(32))
ENCODING_AES_KEY = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8"
"""`KEY` as WeChat shows it in the account's settings: base64 without its trailing "="."""
APP_ID = "wx1234567890abcdef"
TOKEN = "QinglianToken2026"
PREFIX = b"0123456789abcdef"
"""A fixed stand-in for the 16 random bytes."""


def _seal(plain: bytes, key: bytes = KEY) -> str:
    """AES-256-CBC of `plain` (already a multiple of 16 bytes) with the IV the protocol takes: the key's first half."""
    encryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).encryptor()
    return base64.b64encode(encryptor.update(plain) + encryptor.finalize()).decode()


def _open(encrypted: str) -> bytes:
    decryptor = Cipher(algorithms.AES(KEY), modes.CBC(KEY[:16])).decryptor()
    return decryptor.update(base64.b64decode(encrypted)) + decryptor.finalize()


def _layout(body: bytes, app_id: bytes = APP_ID.encode(), prefix: bytes = PREFIX) -> bytes:
    """The protocol's plaintext, padded to a multiple of 32 bytes as WeChat pads it."""
    plain = prefix + len(body).to_bytes(4, "big") + body + app_id
    pad = 32 - len(plain) % 32
    return plain + bytes([pad]) * pad


# --- signatures ---------------------------------------------------------------------------------


def test_the_signature_is_the_sha1_of_the_parts_sorted_as_strings_and_joined() -> None:
    # sorted as strings, not numbers: "1700000000" < "999" < "QinglianToken2026" < "aGVsbG8="
    expected = hashlib.sha1(b"1700000000" b"999" b"QinglianToken2026" b"aGVsbG8=").hexdigest()
    assert signature(TOKEN, "1700000000", "999", "aGVsbG8=") == expected
    assert signature("aGVsbG8=", "999", TOKEN, "1700000000") == expected
    assert signature(TOKEN, "1700000000", "999") == hashlib.sha1(b"1700000000999QinglianToken2026").hexdigest()


def test_a_given_signature_matches_in_either_case_and_only_over_the_same_parts() -> None:
    good = hashlib.sha1(b"1700000000" b"999" b"QinglianToken2026").hexdigest()
    assert signature_matches(good, TOKEN, "1700000000", "999")
    assert signature_matches(good.upper(), TOKEN, "1700000000", "999")
    assert not signature_matches(None, TOKEN, "1700000000", "999")
    assert not signature_matches("", TOKEN, "1700000000", "999")
    assert not signature_matches(good + " ", TOKEN, "1700000000", "999")
    assert not signature_matches(good, "AnotherToken", "1700000000", "999")
    assert not signature_matches(good, TOKEN, "1700000001", "999")
    # a msg_signature covers the Encrypt value too: the plain signature of the URL does not stand in for it
    assert not signature_matches(good, TOKEN, "1700000000", "999", "aGVsbG8=")


def test_a_tampered_encrypt_no_longer_matches_its_msg_signature() -> None:
    """AES-CBC alone does not notice a flipped bit (the message just changes); the msg_signature over the Encrypt
    value is what refuses it."""
    crypto = WeChatCrypto(ENCODING_AES_KEY, APP_ID)
    encrypted = crypto.encrypt("<xml>举报</xml>", random_prefix=PREFIX)
    given = signature(TOKEN, "1700000000", "999", encrypted)
    raw = bytearray(base64.b64decode(encrypted))
    raw[4] ^= 0x01  # in the first block: flips the first byte of the message in the second
    tampered = base64.b64encode(bytes(raw)).decode()
    assert crypto.decrypt(tampered) == ("=xml>举报</xml>", APP_ID)
    assert signature_matches(given, TOKEN, "1700000000", "999", encrypted)
    assert not signature_matches(given, TOKEN, "1700000000", "999", tampered)


# --- the key ------------------------------------------------------------------------------------


@pytest.mark.parametrize("encoding_aes_key", [
    ENCODING_AES_KEY[:-1],  # 42 characters
    ENCODING_AES_KEY + "A",  # 44
    ENCODING_AES_KEY + "=",  # pasted with base64's padding
    ENCODING_AES_KEY[:39],  # valid base64, but of 30 bytes
    ENCODING_AES_KEY[:-1] + "!",
    ENCODING_AES_KEY[:-1] + "-",  # the URL-safe alphabet is not WeChat's
    ENCODING_AES_KEY + " ",
    "",
])
def test_a_key_that_is_not_an_encoding_aes_key_is_refused_naming_the_setting(encoding_aes_key: str) -> None:
    with pytest.raises(ConfigError, match=r"^QINGLIAN_WECHAT_AES_KEY is not a valid EncodingAESKey$"):
        WeChatCrypto(encoding_aes_key, APP_ID)


def test_a_key_with_a_full_width_character_is_refused_naming_the_setting() -> None:
    with pytest.raises(ConfigError, match="QINGLIAN_WECHAT_AES_KEY"):
        WeChatCrypto("Ａ" + ENCODING_AES_KEY[1:], APP_ID)


# --- encryption ---------------------------------------------------------------------------------


def test_encrypt_lays_out_random_bytes_length_message_and_app_id_under_the_key() -> None:
    message = "<xml><Content><![CDATA[窗口索要好处费]]></Content></xml>"
    crypto = WeChatCrypto(ENCODING_AES_KEY, APP_ID)
    first, second = crypto.encrypt(message), crypto.encrypt(message)
    plain = _open(first)
    body = message.encode()
    assert len(body) == 63  # the length counts UTF-8 bytes: 7 Chinese characters are 21 of them
    assert plain[16:20] == b"\x00\x00\x00\x3f"
    assert plain[20:83] == body
    assert plain[83:101] == b"wx1234567890abcdef"
    assert plain[101:] == bytes([27]) * 27  # 101 bytes: 27 of padding make 128
    assert _open(second)[16:] == plain[16:]
    assert _open(second)[:16] != plain[:16] and second != first  # 16 fresh random bytes each time
    assert _open(crypto.encrypt(message, random_prefix=PREFIX))[:16] == PREFIX


@pytest.mark.parametrize(("body_length", "pad", "total"), [
    (0, 26, 64),  # 16 + 4 + 0 + 18 = 38 bytes
    (2, 24, 64),  # 40 bytes: padding to 16 would add 8
    (26, 32, 96),  # 64 bytes, a whole number of blocks: a full block of 32 is added
    (27, 31, 96),
])
def test_the_plaintext_is_padded_to_a_multiple_of_32_bytes(body_length: int, pad: int, total: int) -> None:
    encrypted = WeChatCrypto(ENCODING_AES_KEY, APP_ID).encrypt("x" * body_length, random_prefix=PREFIX)
    plain = _open(encrypted)
    assert len(plain) == total
    assert plain[-pad:] == bytes([pad]) * pad
    assert plain[: total - pad] == PREFIX + body_length.to_bytes(4, "big") + b"x" * body_length + APP_ID.encode()


def test_encrypt_matches_a_ciphertext_built_from_the_protocol() -> None:
    message = "<xml><MsgType><![CDATA[text]]></MsgType><Content><![CDATA[第1步 🏛]]></Content></xml>"
    expected = _seal(_layout(message.encode()))
    assert WeChatCrypto(ENCODING_AES_KEY, APP_ID).encrypt(message, random_prefix=PREFIX) == expected


# --- decryption ---------------------------------------------------------------------------------


def test_a_ciphertext_built_from_the_protocol_decrypts_to_the_message_and_its_app_id() -> None:
    crypto = WeChatCrypto(ENCODING_AES_KEY, APP_ID)
    message = "<xml><Content><![CDATA[岳麓区 window 7 ✅]]></Content></xml>"
    assert crypto.decrypt(_seal(_layout(message.encode()))) == (message, APP_ID)
    # 26 bytes of message fill the layout to 64: the padding is a whole block of 32
    assert len(_layout(b"y" * 26)) == 96
    assert crypto.decrypt(_seal(_layout(b"y" * 26))) == ("y" * 26, APP_ID)
    # the AppID is handed back as found, for the caller to refuse a message meant for another account
    assert crypto.decrypt(_seal(_layout(b"<xml/>", app_id=b"wx0000000000000000"))) == ("<xml/>", "wx0000000000000000")
    # an echostr in URL verification is decrypted the same way
    assert crypto.decrypt(_seal(_layout(b"1616140317555161061"))) == ("1616140317555161061", APP_ID)


def _body_then(raw: bytes) -> bytes:
    """A hand-laid plaintext of `raw` after the 16 random bytes, padded with PKCS#7 to 32."""
    pad = 32 - (16 + len(raw)) % 32
    return PREFIX + raw + bytes([pad]) * pad


@pytest.mark.parametrize(("encrypted", "reason"), [
    ("not base64!", "Encrypt is not base64"),
    ("aGVsbG8=\n", "Encrypt is not base64"),
    ("", "Encrypt is not whole AES blocks"),
    (base64.b64encode(bytes(20)).decode(), "Encrypt is not whole AES blocks"),
    (_seal(PREFIX + bytes(15) + b"\x00"), "bad padding"),  # a padding byte of 0
    (_seal(PREFIX + bytes(15) + b"\x21"), "bad padding"),  # 33: more than a block of 32
    (_seal(PREFIX + bytes(13) + b"\x01\x02\x03"), "bad padding"),  # says 3, but the bytes before are not 3
    (_seal(PREFIX + bytes([16]) * 16), "too short"),  # padding right after the random bytes: no length field
    (_seal(_body_then((1000).to_bytes(4, "big") + b"<xml/>" + APP_ID.encode())), "length field beyond the message"),
    (_seal(_body_then((2).to_bytes(4, "big") + b"\xff\xfe" + APP_ID.encode())), "not UTF-8"),
    (_seal(_body_then((6).to_bytes(4, "big") + b"<xml/>" + b"wx\xc3")), "not UTF-8"),
])
def test_what_is_not_a_sealed_message_is_refused_with_the_reason(encrypted: str, reason: str) -> None:
    with pytest.raises(ValueError, match=f"^{reason}$"):
        WeChatCrypto(ENCODING_AES_KEY, APP_ID).decrypt(encrypted)


def test_a_message_sealed_with_another_key_is_refused() -> None:
    """An account whose EncodingAESKey was changed in WeChat but not here."""
    other_key = bytes(range(100, 132))
    with pytest.raises(ValueError):
        WeChatCrypto(ENCODING_AES_KEY, APP_ID).decrypt(_seal(_layout(b"<xml><Content>hi</Content></xml>"), other_key))


def test_a_non_ascii_encrypt_value_is_refused_as_a_value_error() -> None:
    with pytest.raises(ValueError):
        WeChatCrypto(ENCODING_AES_KEY, APP_ID).decrypt("加密" * 12)
