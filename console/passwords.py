"""Staff passwords: what makes one good enough (length, not built on the account's names, zxcvbn's estimate), and
Argon2id hashing at the deployment's cost."""

from __future__ import annotations

import secrets
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from console import texts

# OWASP's Password Storage Cheat Sheet: Argon2id with at least 19 MiB of memory and 2 passes, or the same work
# traded between them (46 MiB × 1 pass … 7 MiB × 5 passes): memory × passes ≥ 35,840 KiB, and never under 7 MiB
MIN_HASH_MEMORY_KIB = 7 * 1024
MIN_HASH_WORK_KIB = 35_840
MIN_PASSWORD_LENGTH = 10
MIN_PASSWORD_SCORE = 3
"""zxcvbn's score (0-4) a password needs: 3 is "safely unguessable: moderate protection from offline
slow-hash scenario" (about 10^8 guesses and more)."""
ZXCVBN_MAX_LENGTH = 72  # zxcvbn looks at this many characters (its own limit); a longer password is judged by them


@dataclass(frozen=True)
class PasswordAdvice(texts.Phrase):
    """zxcvbn's feedback on a weak password (its warning and suggestions, English sentences of its own), said in
    each language of the console: each sentence by its text `zxcvbn.*`."""

    warning: str
    suggestions: tuple[str, ...]

    def text(self, locale: str) -> str:
        sentences = [sentence for sentence in (self.warning, *self.suggestions) if sentence.strip()]
        if not sentences:
            return texts.get(locale, "zxcvbn.generic")
        space = "" if locale == "zh" else " "  # Chinese sentences follow one another without a space
        return space.join(texts.zxcvbn_sentence(locale, sentence) for sentence in sentences)


class WeakPassword(ValueError):
    """Why a password is not good enough: the console's text `refusal.<key>` with its values; the message is its
    English."""

    def __init__(self, key: str, /, **values: object) -> None:
        self.key = key
        self.values = values
        super().__init__(texts.get("en", f"refusal.{key}", **values))

    def pair(self) -> tuple[str, str]:
        return texts.pair(f"refusal.{self.key}", **self.values)


def password_problem(password: str, user_inputs: Iterable[str] = ()) -> WeakPassword | None:
    """Why `password` is not good enough (None when it is): too short, built on the account's username or
    name, or easy to guess (common, repetitive, a keyboard pattern, a date) by zxcvbn's estimate, with its
    advice."""
    if len(password) < MIN_PASSWORD_LENGTH:
        return WeakPassword("password_short", length=MIN_PASSWORD_LENGTH)
    inputs = [value.strip().lower() for value in user_inputs if value and len(value.strip()) >= 3]
    if any(value in password.lower() for value in inputs):
        return WeakPassword("password_has_name")
    # imported here: its frequency lists hold 12 MB for as long as the process lives, and a serving process
    # judges a new password rarely (an account made or a password changed), while it classifies all day
    from zxcvbn import zxcvbn

    estimate = zxcvbn(password[:ZXCVBN_MAX_LENGTH], user_inputs=inputs, max_length=ZXCVBN_MAX_LENGTH)
    if estimate["score"] < MIN_PASSWORD_SCORE:
        feedback = estimate["feedback"]
        advice = PasswordAdvice(str(feedback.get("warning") or "").strip(),
                                tuple(str(sentence).strip() for sentence in feedback.get("suggestions") or ()))
        return WeakPassword("password_guessable", advice=advice)
    return None


@dataclass(frozen=True)
class PasswordHashing:
    """Argon2id at the deployment's cost (`QINGLIAN_PASSWORD_HASH_*`). The default is RFC 9106's second
    recommendation as argon2-cffi ships it (64 MiB, 3 passes, 4 lanes: about 0.2 s of CPU per sign-in); a
    deployment whose sign-ins crowd its CPUs may lower it to OWASP's minimum, never below (ValueError). A stored hash
    carries the cost it was made with: a change applies to passwords set from then on, and every earlier one still
    verifies."""

    time_cost: int = 3
    memory_kib: int = 65536
    parallelism: int = 4

    def __post_init__(self) -> None:
        if self.time_cost < 1 or self.parallelism < 1:
            raise ValueError("Argon2 needs at least one pass and one lane")
        if self.memory_kib < MIN_HASH_MEMORY_KIB or self.memory_kib * self.time_cost < MIN_HASH_WORK_KIB:
            raise ValueError(f"{self.memory_kib} KiB × {self.time_cost} passes is below OWASP's minimum for Argon2id "
                             f"(19,456 KiB × 2 passes, or as much work: memory × passes ≥ {MIN_HASH_WORK_KIB:,} KiB "
                             f"with at least {MIN_HASH_MEMORY_KIB:,} KiB)")

    @cached_property
    def _hasher(self) -> PasswordHasher:
        return PasswordHasher(time_cost=self.time_cost, memory_cost=self.memory_kib, parallelism=self.parallelism)

    @cached_property
    def dummy_hash(self) -> str:
        """A hash of a random password at this cost: a sign-in with a username nobody has is checked against it and
        takes as long as a real check, so response times do not tell which usernames exist. Made at the first need
        (`prepare`), not at import: the commands that never check a password do not pay for it."""
        return self._hasher.hash(secrets.token_urlsafe(16))

    def prepare(self) -> None:
        """Make the dummy hash now (a serving process, at start), so the first sign-in with an unknown username
        costs what any other does."""
        assert self.dummy_hash

    def hash(self, password: str, *, user_inputs: Iterable[str] = ()) -> str:
        """The hash of a new password; WeakPassword (a ValueError) with the reason when it is too weak."""
        problem = password_problem(password, user_inputs)
        if problem is not None:
            raise problem
        return self._hasher.hash(password)

    def verify(self, password_hash: str | None, password: str) -> bool:
        """Whether `password` is the one `password_hash` was made of (at whatever cost that was made with); a missing
        hash (no such user) takes as long and is False."""
        try:
            return self._hasher.verify(password_hash or self.dummy_hash, password) and password_hash is not None
        except (VerificationError, InvalidHashError):
            return False
