"""Staff passwords: what is good enough, and Argon2id at the deployment's cost (never below OWASP's minimum)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest
from argon2 import extract_parameters

from bot.config import ConfigError, load_settings
from console import texts
from console.passwords import PasswordAdvice, PasswordHashing, WeakPassword, password_problem

DEFAULT = PasswordHashing()
OWASP_MINIMUM = PasswordHashing(time_cost=2, memory_kib=19456, parallelism=1)


def cost(password_hash: str) -> tuple[int, int, int]:
    """(KiB of memory, passes, lanes) a stored hash was made with."""
    parameters = extract_parameters(password_hash)
    return parameters.memory_cost, parameters.time_cost, parameters.parallelism


def test_passwords_are_long_enough_and_checked_against_their_hash() -> None:
    with pytest.raises(ValueError, match="a password needs at least 10 characters"):
        DEFAULT.hash("short")
    stored = DEFAULT.hash("a long enough password")
    assert DEFAULT.verify(stored, "a long enough password")
    assert not DEFAULT.verify(stored, "a long enough passworD")
    assert not DEFAULT.verify(None, "a long enough password")  # no such user
    assert not DEFAULT.verify("not an argon2 hash", "a long enough password")


def test_the_default_cost_is_rfc_9106s_and_a_lower_one_applies_only_to_new_passwords() -> None:
    """A deployment that lowers the cost keeps every account: a hash carries the cost it was made with."""
    made_at_default = DEFAULT.hash("a long enough password")
    assert cost(made_at_default) == (65536, 3, 4)
    made_lower = OWASP_MINIMUM.hash("a long enough password")
    assert cost(made_lower) == (19456, 2, 1)
    assert OWASP_MINIMUM.verify(made_at_default, "a long enough password")
    assert DEFAULT.verify(made_lower, "a long enough password")
    assert not OWASP_MINIMUM.verify(made_at_default, "another long password")


def test_an_unknown_username_is_checked_against_a_hash_of_the_same_cost() -> None:
    """So that a sign-in with a username nobody has takes as long as one with a wrong password."""
    for hashing in (DEFAULT, OWASP_MINIMUM):
        hashing.prepare()
        assert cost(hashing.dummy_hash) == cost(hashing.hash("a long enough password"))
        assert not hashing.verify(None, "a long enough password")


@pytest.mark.parametrize(("memory_kib", "time_cost"), [(19456, 1), (9216, 3), (4096, 10)])
def test_a_cost_below_owasps_minimum_is_refused(memory_kib: int, time_cost: int) -> None:
    with pytest.raises(ValueError, match="below OWASP's minimum for Argon2id"):
        PasswordHashing(time_cost=time_cost, memory_kib=memory_kib)


def test_the_setting_names_the_variable_and_the_minimum(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"invalid setting QINGLIAN_PASSWORD_HASH_TIME_COST: 19456 KiB × 1 passes is "
                                          r"below OWASP's minimum"):
        load_settings(data_dir=tmp_path, password_hash_memory_kib=19456, password_hash_time_cost=1)
    with pytest.raises(ConfigError, match=r"invalid setting QINGLIAN_PASSWORD_HASH_MEMORY_KIB: .*7168"):
        load_settings(data_dir=tmp_path, password_hash_memory_kib=4096, password_hash_time_cost=10)
    chosen = load_settings(data_dir=tmp_path, password_hash_memory_kib=47104, password_hash_time_cost=1,
                           password_hash_parallelism=2)
    assert cost(chosen.password_hashing.hash("a long enough password")) == (47104, 1, 2)


def test_every_sentence_of_zxcvbns_advice_is_said_in_chinese() -> None:
    """zxcvbn's feedback is a fixed set of English sentences (`_("…")` in its feedback module): each has its text."""
    import zxcvbn.feedback

    source = ast.parse(Path(zxcvbn.feedback.__file__).read_text(encoding="utf-8"))
    sentences = {str(node.args[0].value) for node in ast.walk(source)
                 if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id == "_"
                 and isinstance(node.args[0], ast.Constant)}
    assert len(sentences) >= 25
    chinese = {sentence: texts.zxcvbn_sentence("zh", sentence) for sentence in sentences}
    assert sorted(sentence for sentence, said in chinese.items() if said == texts.get("zh", "zxcvbn.unknown")) == []
    assert {texts.zxcvbn_sentence("en", sentence) for sentence in sentences} == sentences


def test_advice_zxcvbn_may_give_in_a_later_version_is_said_in_general_words() -> None:
    advice = PasswordAdvice("Emoji are easy to guess.", ("Avoid sequences.",))
    assert (advice.text("zh"), advice.text("en")) == (
        "请使用由不常用的词组成的更长的短语。避免使用序列。", "Emoji are easy to guess. Avoid sequences.")
    assert PasswordAdvice("", ()).text("zh") == "请使用由不常用的词组成的更长的短语。"


def test_a_weak_password_is_refused_with_its_reason_in_both_languages() -> None:
    problem = password_problem("wang.fang-2026-xyz", ["wang.fang", "王芳"])
    assert problem is not None and problem.pair() == (
        "密码不能包含账户的用户名或姓名", "a password may not contain the username or the name of the account")
    with pytest.raises(WeakPassword, match=r"the password is too easy to guess: This is a top-100 common password\."):
        DEFAULT.hash("1234567890")
