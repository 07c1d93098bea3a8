"""Property-based fuzzing of the dialog: random sequences of updates from several residents.

Each Hypothesis example gets its own copy of a migrated SQLite database and drives two residents
with random text (control characters, emoji, very long, full-width digits, 16-digit codes), button
presses both offered and made up, commands known and unknown with arguments, attachments of random
bytes, kinds and sizes, valid answers that move the report forward, and the clock jumping ahead.
After every step: no exception, every reply is non-empty text, the state is a known one, the draft is
well-typed, the offered choices have unique short keys, and cases appear only through a submit, each
complete and with a trace that starts with "received".
"""

from __future__ import annotations

import asyncio
import re
import shutil
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select
from sqlalchemy.orm import selectinload

from handlers import report, tracking
from handlers.city import load_city_config
from handlers.context import DialogContext
from handlers.dialog import COMMANDS
from handlers.routing import RouteDecision
from handlers.routing import route as decide
from handlers.texts import Texts
from handlers.types import Outbound
from storage.db import create_engine, create_sessionmaker
from storage.migrate import upgrade
from storage.models import Attachment, Case, Conversation
from tests.conftest import make_test_keyring
from tests.handlers.conftest import JPEG, PDF, Clock, DialogHarness, Resident

KNOWN_STATES = frozenset({"idle", "resume", "language", *report.WIZARD_STATES, *tracking.TRACKING_STATES})
DRAFT_STEPS = frozenset(report.WIZARD_STATES) - {"edit"}
RECEIPT = re.compile(r"\d{4} \d{4} \d{4} \d{4}")
RESIDENTS = (("r1", "zh-hans"), ("r2", "en"))
DESCRIPTION = "岳麓区政务服务中心3号窗口的工作人员上班时间一直玩手机，让群众排队等了两个小时。"
VALID_TEXT = {"place": "岳麓区政务服务中心3号窗口", "when": "上周三下午", "description": DESCRIPTION,
              "name": "欧阳明月", "phone": "13987654321", "follow_up": "补充：今天又去了一次，还是一样。"}
# the types a draft's fields may have; a field not listed here is corruption
DRAFT_FIELDS: dict[str, tuple[type, ...]] = {
    "step": (str,), "attachments": (list,), "district": (str, type(None)), "place": (str,),
    "occurred": (str,), "description": (str,), "anonymous": (bool,), "name": (str, type(None)),
    "phone": (str, type(None)), "pending_name": (str, type(None)), "editing": (bool,),
    # a contact card's number kept while its name is asked again; a pasted text the app may have cut, kept with the
    # conversation as its step found it, for its rest (`dialog._as_the_step_began`)
    "pending_phone": (str, type(None)), "cut": (dict,),
}

# --- strategies -----------------------------------------------------------------------------------

FULLWIDTH = "０１２３４５６７８９"
EMOJI = "😀🙏🏻👨‍👩‍👧‍👦🇨🇳❤️✅★☆⭐️🔥"
sixteen_digits = st.text("0123456789", min_size=16, max_size=16)
codes = st.one_of(
    sixteen_digits,
    sixteen_digits.map(lambda d: " ".join(d[i:i + 4] for i in range(0, 16, 4))),
    sixteen_digits.map(lambda d: "-".join(d[i:i + 4] for i in range(0, 16, 4))),
    sixteen_digits.map(lambda d: d.translate(str.maketrans("0123456789", FULLWIDTH))),
    st.text("0123456789", min_size=15, max_size=17),
)
texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(categories=["Cc", "Cf", "Zs", "Zl", "So", "Mn"]), max_size=30),
    st.text(EMOJI + "举报提交 ", max_size=20),
    st.builds(lambda ch, n: ch * n, st.sampled_from(["字", "a", " ", "\n", "😀", "\x00", "１"]),
              st.integers(0, 5000)),
    st.text(FULLWIDTH, min_size=1, max_size=20),
    codes,
    st.sampled_from(["", " ", "0", "1", "2", "3", "5", "6", "-1", "99", "★★★", "★" * 9, "提交", "修改", "匿名",
                     "Submit", "/start", "2099-01-01", "2026-02-30", "昨天", "13987654321", "+86 139 8765 4321"]),
)
choice_keys = st.one_of(
    st.sampled_from(["menu:report", "menu:status", "menu:nothing", "menu:", "language:xx", "language:",
                     "district:mars", "district:", "summary:submit", "evidence:clear", "edit:place", "edit:",
                     "rate:0", "rate:9", "rate:", "case:rate", "case:follow_up", "resume:continue", "follow_up:done",
                     ":", ""]),
    st.text(max_size=70),
)
command_names = st.one_of(st.sampled_from([*COMMANDS, "START", "Report", "foo", "unknown_command", "x" * 200]),
                          st.text(max_size=20))
attachment_contents = st.one_of(
    st.just(JPEG), st.just(PDF), st.binary(max_size=300),
    st.binary(max_size=200).map(lambda tail: JPEG[:4] + tail),
    st.binary(max_size=200).map(lambda tail: b"%PDF-" + tail),
    st.just(b"MZ\x90\x00 not an image"),
)
uploads = st.tuples(
    st.just("upload"), st.integers(0, len(RESIDENTS) - 1),
    st.sampled_from(["photo", "document", "sticker", "voice", "video", "audio", "location", "other"]),
    st.sampled_from([None, "image/jpeg", "image/png", "application/pdf", "text/plain", "application/x-msdownload",
                     ""]),
    st.sampled_from([None, "", "photo.jpg", "x.pdf", "a" * 400, "../../etc/passwd", "😀.jpg", "evil\x00.jpg"]),
    attachment_contents,
    st.one_of(st.none(), st.integers(0, 60 * 1024 * 1024), st.just(-1)),
)
resident_index = st.integers(0, len(RESIDENTS) - 1)
actions = st.one_of(
    st.tuples(st.just("say"), resident_index, texts),
    st.tuples(st.just("press_offered"), resident_index, st.integers(0, 20)),
    st.tuples(st.just("press"), resident_index, choice_keys),
    st.tuples(st.just("command"), resident_index, command_names, st.one_of(st.none(), texts)),
    uploads,
    st.tuples(st.just("sticker"), resident_index),
    # a run of valid answers to the questions asked, so that random runs reach submits and tracking
    st.tuples(st.just("answer"), resident_index, st.integers(1, 10)),
    st.tuples(st.just("answer"), resident_index, st.integers(1, 10)),
    st.tuples(st.just("known_code"), resident_index, st.integers(0, 10)),
    st.tuples(st.just("advance"), st.sampled_from([0.01, 1.0, 8.0])),  # days
)

# --- the run --------------------------------------------------------------------------------------

_TEMPLATE: list[Path] = []
STATS: dict[str, Any] = {"examples": 0, "submits": 0, "states": set()}


def migrated_template() -> Path:
    """One migrated database per test run; each example works on its own copy."""
    if not _TEMPLATE:
        directory = Path(tempfile.mkdtemp(prefix="qinglian-fuzz-"))
        upgrade(f"sqlite+aiosqlite:///{directory / 'template.db'}", make_test_keyring())
        _TEMPLATE.append(directory / "template.db")
    return _TEMPLATE[0]


@dataclass
class Run:
    harness: DialogHarness
    residents: list[Resident]
    codes: list[str] = field(default_factory=list)
    submits: int = 0


async def _conversation(run: Run, resident: Resident) -> Conversation | None:
    async with run.harness.sessionmaker() as session:
        user_key = make_test_keyring().pseudonym("test", resident.user_ref)
        query = select(Conversation).where(Conversation.channel == "test", Conversation.user_key == user_key)
        return (await session.execute(query)).scalar_one_or_none()


async def _case_count(run: Run) -> int:
    async with run.harness.sessionmaker() as session:
        return int((await session.execute(select(func.count(Case.id)))).scalar_one())


def _last_choices(resident: Resident) -> list[str]:
    for message in reversed(resident.last):
        if message.choices:
            return [choice.key for choice in message.choices]
    return []


async def _step(run: Run, action: tuple[Any, ...]) -> None:
    kind = action[0]
    if kind == "advance":
        run.harness.clock.advance(days=action[1])
        return
    resident = run.residents[action[1]]
    if kind == "say":
        await resident.say(action[2])
    elif kind == "press_offered":
        offered = _last_choices(resident)
        await resident.press(offered[action[2] % len(offered)] if offered else "menu:report")
    elif kind == "press":
        await resident.press(action[2])
    elif kind == "command":
        await resident.command(action[2], action[3])
    elif kind == "upload":
        _, _, attachment_kind, media_type, name, content, size = action
        await resident.upload(content, attachment_kind, media_type, name, size)
    elif kind == "sticker":
        await resident.send_sticker()
    elif kind == "known_code":
        await resident.say(run.codes[action[2] % len(run.codes)] if run.codes else "0000 0000 0000 0000")
    elif kind == "answer":  # one valid answer; the loop in scenario() repeats it
        conversation = await _conversation(run, resident)
        state = conversation.state if conversation else "idle"
        offered = _last_choices(resident)
        if state == "status_code":
            await resident.say(run.codes[-1] if run.codes else "1234 5678 9012 3456")
        elif state in VALID_TEXT and (state != "when" or not offered):
            await resident.say(VALID_TEXT[state])
        elif offered:
            await resident.press(offered[0])  # the first option always moves the flow forward
        else:
            await resident.command("report")
    else:  # pragma: no cover
        raise AssertionError(kind)


def _check_replies(replies: list[Outbound]) -> None:
    assert replies, "the dialog did not answer"
    for message in replies:
        assert isinstance(message, Outbound)
        assert isinstance(message.text, str) and message.text.strip(), f"empty reply in {replies!r}"
        keys = [choice.key for choice in message.choices]
        assert len(keys) == len(set(keys)), f"duplicate choice keys: {keys}"
        for choice in message.choices:
            assert 0 < len(choice.key.encode()) <= 64, choice.key  # Telegram's callback_data limit
            assert isinstance(choice.label, str) and choice.label.strip(), choice


def _check_conversation(run: Run, conversation: Conversation | None, replies: list[Outbound]) -> None:
    assert conversation is not None, "no conversation after a step"
    assert conversation.state in KNOWN_STATES, conversation.state
    draft = conversation.draft
    assert isinstance(draft, dict), draft
    for name, value in draft.items():
        assert name in DRAFT_FIELDS, f"unknown draft field {name!r} in {draft!r}"
        assert isinstance(value, DRAFT_FIELDS[name]), f"draft field {name!r} is {value!r}"
    if "step" in draft:
        assert draft["step"] in DRAFT_STEPS, draft
    attachments = draft.get("attachments", [])
    assert all(isinstance(a, int) and not isinstance(a, bool) for a in attachments), draft
    assert len(attachments) <= run.harness.context.city.limits.max_attachments, draft
    if conversation.state in report.WIZARD_STATES or conversation.state == "resume":
        assert draft.get("step") in DRAFT_STEPS, f"state {conversation.state} without a draft: {draft!r}"
    if draft.get("description") is not None:
        limits = run.harness.context.city.limits
        assert len(draft["description"]) <= limits.description_max_chars
    context = conversation.context
    assert isinstance(context, dict), context
    offered = context.get("choices", [])
    assert isinstance(offered, list) and all(isinstance(c, list) and len(c) == 2 for c in offered), context
    asked = [message for message in replies if message.choices]
    if replies[-1].choices:
        assert [c.key for c in replies[-1].choices] == [key for key, _ in offered], (replies[-1], offered)
    elif asked and offered:
        # the buttons still on screen are the ones the dialog remembers
        assert [key for key, _ in offered] == [c.key for c in asked[-1].choices], (asked[-1], offered)


async def _check_new_case(run: Run, resident: Resident, draft_before: dict[str, Any]) -> None:
    async with run.harness.sessionmaker() as session:
        query = select(Case).options(selectinload(Case.trace)).order_by(Case.id.desc()).limit(1)
        case = (await session.execute(query)).scalar_one()
        attachment_ids = list((await session.execute(
            select(Attachment.id).where(Attachment.case_id == case.id).order_by(Attachment.id))).scalars())
    limits = run.harness.context.city.limits
    assert case.case_number and case.case_number in resident.text(), (case.case_number, resident.text())
    assert case.channel == "test" and case.reporter_ref == resident.user_ref
    assert isinstance(case.place, str) and case.place.strip()
    assert isinstance(case.occurred, str) and case.occurred.strip()
    assert isinstance(case.description, str)
    assert limits.description_min_chars <= len(case.description) <= limits.description_max_chars
    assert case.receipt_code_hash and case.queue and case.status and case.locale
    assert isinstance(case.anonymous, bool)
    if case.anonymous:
        assert case.reporter_name is None and case.reporter_phone is None
    else:
        assert case.reporter_name and case.reporter_phone
    assert case.district is None or run.harness.context.city.district(case.district) is not None
    assert sorted(attachment_ids) == sorted(draft_before.get("attachments", []))
    assert case.trace and case.trace[0].kind == "received", [event.kind for event in case.trace]


def _expand(steps: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """("answer", resident, n) stands for n single valid answers, each checked like any other step."""
    expanded: list[tuple[Any, ...]] = []
    for action in steps:
        if action[0] == "answer":
            expanded.extend([("answer", action[1])] * (action[2] if len(action) > 2 else 1))
        else:
            expanded.append(action)
    return expanded


async def scenario(template: Path, directory: Path, steps: list[tuple[Any, ...]]) -> Run:
    database = directory / "dialog.db"
    shutil.copyfile(template, database)
    engine = create_engine(f"sqlite+aiosqlite:///{database}", make_test_keyring())
    city = load_city_config(None)
    clock = Clock()

    async def route(text: str, district: str | None) -> RouteDecision:
        return decide(city, None, district, clock())

    context = DialogContext(city=city, texts=Texts(), secret_key=b"s" * 32, evidence_dir=directory / "evidence",
                            route=route, clock=clock)
    harness = DialogHarness(create_sessionmaker(engine), context, clock)
    run = Run(harness, [harness.resident(user, locale) for user, locale in RESIDENTS])
    try:
        for action in _expand(steps):
            resident = run.residents[action[1]] if action[0] != "advance" else None
            before = await _conversation(run, resident) if resident else None
            cases_before = await _case_count(run)
            await _step(run, action)
            cases_after = await _case_count(run)
            if resident is None:
                assert cases_after == cases_before
                continue
            _check_replies(resident.last)
            _check_conversation(run, await _conversation(run, resident), resident.last)
            receipt = RECEIPT.search(resident.text())
            if cases_after != cases_before:
                assert cases_after == cases_before + 1, (cases_before, cases_after)
                assert before is not None and before.state == "summary", "a case appeared outside a submit"
                assert receipt, resident.text()
                await _check_new_case(run, resident, before.draft)
                run.codes.append(receipt.group(0))
                run.submits += 1
            else:
                assert receipt is None or action[0] in ("say", "known_code", "answer", "command"), resident.text()
        assert await _case_count(run) == run.submits
        STATS["examples"] += 1
        STATS["submits"] += run.submits
        STATS["states"] |= {(await _conversation(run, r)).state for r in run.residents if r.last}  # type: ignore[union-attr]
        return run
    finally:
        await engine.dispose()


def run_scenario(steps: list[tuple[Any, ...]]) -> Run:
    """One example on its own event loop and database (a thread of its own: pytest's loop may be running)."""
    template = migrated_template()  # the migrations run their own event loop
    with tempfile.TemporaryDirectory(prefix="qinglian-fuzz-") as directory, ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, scenario(template, Path(directory), steps)).result()


@given(steps=st.lists(actions, min_size=1, max_size=40))
@settings(max_examples=60, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
def test_random_updates_never_crash_or_corrupt_the_conversation(steps: list[tuple[Any, ...]]) -> None:
    run_scenario(steps)


def test_the_valid_answers_alone_file_a_report() -> None:
    """The fuzzer's "answer" action really reaches a submit, so the case checks above are exercised."""
    steps: list[tuple[Any, ...]] = [("answer", 0, 8), ("known_code", 0, 0), ("answer", 0, 2)]
    run = run_scenario(steps)
    assert run.submits == 1 and run.codes
    assert "case:follow_up" in _last_choices(run.residents[0]) or "follow_up:done" in _last_choices(run.residents[0])


@pytest.fixture(scope="module", autouse=True)
def _remove_template() -> Any:
    yield
    for template in _TEMPLATE:
        shutil.rmtree(template.parent, ignore_errors=True)
    _TEMPLATE.clear()
