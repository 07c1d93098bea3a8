"""The console's texts: both languages have every text with the same placeholders, and every text the
console's code asks for exists (a typo in a key would otherwise only show when that page is rendered)."""

from __future__ import annotations

import re
import string
from pathlib import Path

import pytest

from console import texts
from console.operations import OperationError
from console.training import STAGES
from nlp.errors import REFUSALS as MODEL_REFUSALS
from storage.actions import REFUSALS, ActionError
from storage.models import CaseStatus, StaffRole, TraceKind

CONSOLE = Path(texts.__file__).resolve().parent
CJK = re.compile(r"[\u3400-\u9fff]")
LITERAL_KEY = re.compile(r'texts\.(?:pair|joined|get|has)\(\s*(?:"(?:zh|en)",\s*|locale,\s*)?"([a-z_]+\.[a-z_.]+)"')
DONE_CODES = tuple(re.compile(pattern) for pattern in (
    r"[?&]done=(\w+)", r'done: str = "(\w+)"', r"'done': '(\w+)'", r'_case_url\(case_number, "(\w+)"',
    r'_after_move\([^)]*"(\w+)"\)', r'_staff_url\(username, "(\w+)"\)'))


def _placeholders(template: str) -> set[str]:
    return {name for _, name, _, _ in string.Formatter().parse(template) if name}


def _sources() -> dict[str, str]:
    return {str(path.relative_to(CONSOLE)): path.read_text(encoding="utf-8") for path in CONSOLE.rglob("*.py")}


def test_both_languages_have_every_text_with_the_same_placeholders() -> None:
    chinese = texts.load_locale(texts.LOCALES_DIR / "zh.toml")
    english = texts.load_locale(texts.LOCALES_DIR / "en.toml")
    assert sorted(chinese) == sorted(english)
    assert {key: _placeholders(value) for key, value in chinese.items()} == {
        key: _placeholders(value) for key, value in english.items()}
    assert all(value.strip() for value in [*chinese.values(), *english.values()])


def test_a_text_is_chinese_and_english_with_its_values() -> None:
    assert texts.pair("login.failed", attempts=5, minutes=15) == (
        "用户名或密码错误，或账户已停用。连续失败 5 次后账户将锁定 15 分钟。",
        "Wrong username or password, or the account is disabled or locked (5 failures lock it for 15 minutes).")
    assert texts.joined("account.passwords_differ") == "两次输入的新密码不一致 The new passwords differ."
    assert texts.get("en", "digest.new", count=3) == "New in the last 24 hours: 3"
    assert texts.pair_or("status.teleported", "teleported") == ("teleported", "teleported")
    with pytest.raises(KeyError):
        texts.pair("status.teleported")


def test_every_text_the_code_names_exists() -> None:
    used = {(name, key) for name, source in _sources().items() for key in LITERAL_KEY.findall(source)}
    assert len(used) >= 25  # the pattern still finds the calls
    assert [(name, key) for name, key in sorted(used) if not texts.has(key)] == []


def test_every_notice_a_page_redirects_with_exists() -> None:
    codes = {code for source in _sources().values() for pattern in DONE_CODES for code in pattern.findall(source)}
    assert {"accepted", "moved_away", "saved", "revoked", "training", "totp_on"} <= codes
    assert sorted(code for code in codes if not texts.has(f"done.{code}")) == []


def test_every_status_role_and_training_stage_has_a_name() -> None:
    keys = texts.keys()
    assert {f"status.{status.value}" for status in CaseStatus} <= keys
    assert {kind.value for kind in TraceKind} <= {key.split(".", 1)[1] for key in keys
                                                  if key.startswith(("status.", "trace."))}
    assert {f"role.{role.value}" for role in StaffRole} <= keys
    assert {f"stage.{stage}" for stage in STAGES} <= keys


def test_every_audited_action_has_a_name_in_both_languages() -> None:
    """The audit log and the ticket's activity showed raw keys ("problem.answer problem.answer") for the actions
    the texts did not name; so did it for the retention's erasures ("retention.erase_contact")."""
    recorded = _audited_actions()
    assert len(recorded) > 30
    assert sorted(action for action in recorded if not texts.has(f"audit.{action}")) == []


def _audited_actions() -> set[str]:
    """Every action written into the audit log: by `record` and `record_many` (storage, console), and by the
    commands (`audit_command`, the model commands' `_audit`)."""
    root = Path(__file__).resolve().parents[2]
    recorded = set()
    for source in [*root.glob("storage/*.py"), *root.glob("console/*.py"), *root.glob("console/routes/*.py"),
                   *root.glob("bot/*.py"), *root.glob("nlp/*.py")]:
        recorded |= set(re.findall(r'\b(?:record|record_many|audit_command|_audit)\((?:[^()"]|\([^()]*\))*?'
                                   r'"([a-z_]+\.[a-z_]*)"', source.read_text(encoding="utf-8")))
    recorded |= {"case.extension_approved", "case.extension_refused"}  # "case.extension_" + the decision
    recorded.discard("case.extension_")
    return recorded


def test_every_audited_action_can_be_chosen_in_the_audit_filter() -> None:
    """The retention's erasures and the evidence cleaning could not be filtered for: no group held them."""
    from console.routes.audit import ACTION_GROUPS

    recorded = _audited_actions()
    assert {"retention.erase_contact", "evidence.clean", "model.promote"} <= recorded
    groups = tuple(prefix for prefix, _zh, _en in ACTION_GROUPS)
    assert sorted(action for action in recorded if action != "logout" and not action.startswith(groups)) == []


REFUSAL = re.compile(r'OperationError\(\s*\d{3},\s*"([a-z_]+)"|__init__\(\s*\d{3},\s*"([a-z_]+)"')
STORAGE_REFUSAL = re.compile(r'Error\.of\(\s*"([a-z_]+)"')


def test_every_reason_the_console_refuses_with_is_said_in_both_languages() -> None:
    """The console's refusals were English sentences under a Chinese heading: each is now a text `refusal.<key>`,
    the console's own (`OperationError(status, key, ...)`) and the storage actions' (`ActionError.of(code, ...)`)."""
    root = CONSOLE.parent
    used = {key for source in _sources().values() for pair in REFUSAL.findall(source) for key in pair if key}
    coded = {code for path in (root / "storage").rglob("*.py")
             for code in STORAGE_REFUSAL.findall(path.read_text(encoding="utf-8"))}
    assert len(used) > 60 and len(coded) > 35  # the patterns still find the raise sites
    assert coded <= set(REFUSALS)
    chinese = texts.load_locale(texts.LOCALES_DIR / "zh.toml")
    english = texts.load_locale(texts.LOCALES_DIR / "en.toml")
    for table in (chinese, english):
        assert sorted(key for key in used | set(REFUSALS) if f"refusal.{key}" not in table) == []


def test_the_english_of_a_storage_refusal_is_its_message_as_the_api_answers_it() -> None:
    english = texts.load_locale(texts.LOCALES_DIR / "en.toml")
    assert {code: english[f"refusal.{code}"] for code in REFUSALS} == REFUSALS


def test_each_refusal_of_the_model_registry_is_said_in_both_languages_and_its_english_is_its_message() -> None:
    chinese = texts.load_locale(texts.LOCALES_DIR / "zh.toml")
    english = texts.load_locale(texts.LOCALES_DIR / "en.toml")
    assert {code: english[f"refusal.{code}"] for code in MODEL_REFUSALS} == MODEL_REFUSALS
    assert all(CJK.search(chinese[f"refusal.{code}"]) for code in MODEL_REFUSALS)
    assert not set(MODEL_REFUSALS) & set(REFUSALS)


def test_a_refusal_is_said_with_its_values_in_each_language() -> None:
    refused = OperationError(422, "no_case", number="QL-2026-000001")
    assert (refused.status_code, refused.message) == (422, "no case QL-2026-000001 in your queues")
    error = ActionError.of("case_is_status", number="QL-2026-000001", status=CaseStatus.CLOSED)
    wrapped = OperationError.refused(409, error)
    assert str(error) == wrapped.message == "case QL-2026-000001 is closed"
    assert (wrapped.key, wrapped.values) == ("case_is_status", {"number": "QL-2026-000001", "status": "closed"})
    plain = OperationError.refused(409, ActionError("no staff user 'x'"))
    assert (plain.key, plain.message) == ("other", "no staff user 'x'")
