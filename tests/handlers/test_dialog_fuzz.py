"""Property-based fuzzing of the dialog: random sequences of updates from several residents.

Each Hypothesis example gets its own copy of a migrated SQLite database and drives two residents
with random text (control characters, emoji, very long, full-width digits, 16-digit codes), button
presses both offered and made up, commands known and unknown with arguments, attachments of random
bytes, kinds and sizes, valid answers that move the report forward, and the clock jumping ahead.
After every step: no exception, every reply is non-empty text, the state is a known one, the draft is
well-typed, the offered choices have unique short keys, and cases appear only through a submit, each
complete and with a trace that starts with "received".

Some steps are bursts, as a channel that gathers what a resident sends in one go (Telegram) hands them in:
a long text pasted and cut by the app into parts (`may_be_cut` on all but the last), an album's files (one
`group`), or a random mix of those with plain texts and lone files. Their replies are held and taken back by
the next message of the burst; what the resident reads is what the outbox keeps. After a burst the same
checks hold for what the resident reads, and nothing they sent is lost: a cut text is never kept in part —
a description or a follow-up it became holds the whole text — and the evidence count the resident reads is
the files kept, an album's in the order sent.
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
from handlers.types import Attachment as Sent
from handlers.types import Outbound
from handlers.validation import join_parts, readable
from storage.db import create_engine, create_sessionmaker
from storage.migrate import upgrade
from storage.models import Attachment, Case, Conversation, TraceEvent
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
    "occurred": (str,), "description": (str, type(None)), "anonymous": (bool,), "name": (str, type(None)),
    "phone": (str, type(None)), "pending_name": (str, type(None)), "editing": (bool,),
    # a contact card's number kept while its name is asked again; a pasted text the app may have cut, kept with the
    # conversation as its step found it, for its rest (`dialog._as_the_step_began`)
    "pending_phone": (str, type(None)), "cut": (dict,),
    # the question (place or time) whose answer was taken for the story, which its button gives back
    "story_taken": (str, type(None)),
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
                     "Submit", "/start", "2099-01-01", "2026-02-30", "昨天", "13987654321", "+86 139 8765 4321",
                     "窗口工作人员一直在玩手机，让我等了两个小时也不办理，还说明天再来，态度非常恶劣，希望严肃处理。"]),
)
choice_keys = st.one_of(
    st.sampled_from(["menu:report", "menu:status", "menu:nothing", "menu:", "language:xx", "language:",
                     "district:mars", "district:", "summary:submit", "evidence:clear", "edit:place", "edit:",
                     "rate:0", "rate:9", "rate:", "case:rate", "case:follow_up", "resume:continue", "follow_up:done",
                     "story:answer",
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
CUT_FROM = 2048
"""How long a text is that a channel hands in as `may_be_cut` (bot.channels.telegram.CUT_FROM)."""
long_texts = st.builds(lambda unit, length: (unit * (length // len(unit) + 1))[:length],
                       st.one_of(st.sampled_from([DESCRIPTION, "窗口人员推诿扯皮。", "The clerk kept us waiting. ",
                                                  "a\n\n", " ", "😀", "１２３４ "]), st.text(min_size=1, max_size=20)),
                       st.integers(CUT_FROM, 4096))
photo_contents = st.one_of(st.just(JPEG), st.just(PDF), st.binary(max_size=100))
burst_messages = st.one_of(
    st.tuples(st.just("cut"), long_texts),  # a part of a cut text: its rest may follow
    st.tuples(st.just("text"), texts),
    st.tuples(st.just("album"), photo_contents),  # a file of the burst's album
    st.tuples(st.just("file"), photo_contents),  # a file of its own
)
answers_first = st.one_of(st.just(0), st.integers(3, 10))
"""Valid answers before a burst (`_expand`), so that bursts also come at the description and evidence steps."""
actions = st.one_of(
    # the parts of one pasted text: one or two cut where the app cuts, and the rest
    st.tuples(st.just("paste"), resident_index, st.lists(long_texts, min_size=1, max_size=2), texts, answers_first),
    st.tuples(st.just("album"), resident_index, st.lists(photo_contents, min_size=2, max_size=6), answers_first),
    st.tuples(st.just("burst"), resident_index, st.lists(burst_messages, min_size=1, max_size=4), answers_first),
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
    albums: int = 0


def _sent_file(content: bytes) -> Sent:
    async def fetch() -> bytes:
        return content

    return Sent("photo", "image/jpeg", len(content), None, fetch)


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
    elif kind == "paste":
        await resident.paste(*action[2], action[3])
    elif kind == "album":
        run.albums += 1
        await resident.in_one_go(*({"attachment": _sent_file(content), "group": f"album-{run.albums}"}
                                   for content in action[2]))
    elif kind == "burst":
        run.albums += 1
        messages: list[dict[str, Any]] = []
        for part, value in action[2]:
            if part in ("cut", "text"):
                messages.append({"text": value, "may_be_cut": part == "cut"})
            else:
                messages.append({"attachment": _sent_file(value),
                                 "group": f"album-{run.albums}" if part == "album" else None})
        await resident.in_one_go(*messages)
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
    if conversation.state == "evidence" and attachments and replies[-1].choices and \
            "evidence:done" in [choice.key for choice in replies[-1].choices]:
        # the count the resident reads under the question is the files kept
        maximum = run.harness.context.city.limits.max_attachments
        assert f"{len(attachments)}/{maximum}" in replies[-1].text, (attachments, replies[-1].text)
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


async def _follow_ups(run: Run) -> dict[int, str | None]:
    async with run.harness.sessionmaker() as session:
        return {event_id: body for event_id, body in await session.execute(
            select(TraceEvent.id, TraceEvent.body).where(TraceEvent.kind == "follow_up"))}


def _check_burst(action: tuple[Any, ...], before: Conversation | None, after: Conversation | None,
                 added: list[str | None]) -> None:
    """Nothing of what a burst sent is lost: a pasted text is kept whole or not at all (never a part of it as a
    description or a follow-up); an album's files are kept after the ones before, in the order sent."""
    assert after is not None
    started = before.state if before is not None else "idle"
    draft_before = before.draft if before is not None else {}
    if action[0] == "paste":
        whole = ""
        for part in [*action[2], action[3]]:
            whole = join_parts(whole, part)
        assert added in ([], [whole.strip()]), (len(whole), [len(body or "") for body in added])
        description = after.draft.get("description")
        if description is not None and description != draft_before.get("description"):
            assert readable(whole) in description, (len(whole), len(description))
    if action[0] == "album" and started == "evidence" and after.state == "evidence":
        kept, earlier = after.draft.get("attachments", []), draft_before.get("attachments", [])
        assert kept[:len(earlier)] == earlier and kept == sorted(kept), (earlier, kept)


BURSTS = ("paste", "album", "burst")


def _expand(steps: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """("answer", resident, n) stands for n single valid answers, each checked like any other step; a burst's last
    field is how many valid answers come before it."""
    expanded: list[tuple[Any, ...]] = []
    for action in steps:
        if action[0] == "answer":
            expanded.extend([("answer", action[1])] * (action[2] if len(action) > 2 else 1))
        elif action[0] in BURSTS:
            expanded.extend([("answer", action[1])] * action[-1])
            expanded.append(action[:-1])
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
            follow_ups_before = await _follow_ups(run) if action[0] in ("paste", "album") else {}
            await _step(run, action)
            cases_after = await _case_count(run)
            if resident is None:
                assert cases_after == cases_before
                continue
            _check_replies(resident.last)
            after = await _conversation(run, resident)
            _check_conversation(run, after, resident.last)
            if action[0] in ("paste", "album"):
                added = [body for event_id, body in sorted((await _follow_ups(run)).items())
                         if event_id not in follow_ups_before]
                _check_burst(action, before, after, added)
            receipt = RECEIPT.search(resident.text())
            if cases_after != cases_before:
                assert cases_after == cases_before + 1, (cases_before, cases_after)
                assert before is not None and before.state == "summary", "a case appeared outside a submit"
                assert receipt, resident.text()
                await _check_new_case(run, resident, before.draft)
                run.codes.append(receipt.group(0))
                run.submits += 1
            else:
                # a code the resident typed may be quoted back (a text offered as a report, its offer asked again)
                assert receipt is None or action[0] in ("say", "known_code", "answer", "command", *BURSTS), \
                    resident.text()
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


def test_bursts_at_the_steps_that_gather_them_keep_everything_sent() -> None:
    """The fuzzer's bursts really take the gathered path where it matters — a text cut in two at the description
    step and as information added to a case, an album at the evidence step — and its checks hold there."""
    whole = (DESCRIPTION * 40)[:2500]
    steps: list[tuple[Any, ...]] = [
        ("paste", 0, [whole[:2100]], whole[2100:], 4),  # report, district, place, when: at the description
        ("album", 0, [JPEG, PDF, JPEG], 0),
        ("answer", 0, 3), ("known_code", 0, 0), ("answer", 0, 1),  # the case open, "add information" pressed
        ("paste", 0, [whole[:2100]], whole[2100:], 0),
    ]
    run = run_scenario(steps)
    assert run.submits == 1
    assert run.residents[0].last[0].text.startswith("补充材料已收到")
    assert run.residents[0].keys() == ["follow_up:done"]


@pytest.fixture(scope="module", autouse=True)
def _remove_template() -> Any:
    yield
    for template in _TEMPLATE:
        shutil.rmtree(template.parent, ignore_errors=True)
    _TEMPLATE.clear()
