"""What staff can do to tickets, through the console's REST API on an app of its own (the rules are the same
for the pages): who may assign to whom, what a duplicate may point to, where a relabelled case goes,
evidence files that went missing, and an answer waking the outbox worker."""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from console import operations
from console.app import mount_console
from console.context import ConsoleContext
from storage import actions, evidence_rows, queries, staff_actions
from storage.models import StaffRole
from tests.console.conftest import JPEG, make_context
from tests.factories import create_staff, file_case


class Console:
    def __init__(self, context: ConsoleContext, woken: list[str]) -> None:
        self.context = context
        self.woken = woken
        app = FastAPI()
        mount_console(app, context)
        self.client = httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test")
        self._tokens: dict[str, str] = {}

    async def staff(self, username: str, role: StaffRole = StaffRole.REVIEWER, queues: tuple[str, ...] = (),
                    *, active: bool = True) -> None:
        async with self.context.database.sessionmaker.begin() as session:
            user = await create_staff(session, username, role, queues)
            self._tokens[username], _ = await staff_actions.create_api_token(session, user, "tests", actor=user)
            if not active:
                await staff_actions.set_active(session, user, False)

    async def case(self, queue: str = "clean_hall", **fields: Any) -> str:
        async with self.context.database.sessionmaker.begin() as session:
            case, _ = await file_case(session, secret_key=self.context.secret_key, queue=queue, **fields)
        return str(case.case_number)

    async def post(self, who: str, path: str, body: dict[str, Any] | None = None) -> httpx.Response:
        return await self.client.post(f"/api/v1/cases/{path}", json=body,
                                      headers={"Authorization": f"Bearer {self._tokens[who]}"})

    async def get(self, who: str, path: str) -> httpx.Response:
        return await self.client.get(f"/api/v1/cases/{path}", headers={"Authorization": f"Bearer {self._tokens[who]}"})


@pytest.fixture
async def console(database: Any, tmp_path: Path) -> AsyncIterator[Console]:
    woken: list[str] = []
    built = Console(make_context(database, tmp_path, woken=woken), woken)
    async with built.client:
        yield built


def _outcome(response: httpx.Response) -> tuple[int, Any]:
    return response.status_code, response.json()["detail"] if response.status_code >= 400 else None


async def test_an_answer_wakes_the_outbox_worker_and_a_refused_one_does_not(console: Console) -> None:
    await console.staff("li", queues=("clean_hall",))
    own, other = await console.case("clean_hall"), await console.case("petitions")

    answered = await console.post("li", f"{own}/answer", {"text": "已约谈当事工作人员。"})
    refused = await console.post("li", f"{other}/answer", {"text": "不是我的案件"})

    assert (answered.status_code, answered.json()["status"], refused.status_code) == (200, "answered", 404)
    assert console.woken == ["outbox"]


async def test_an_answer_to_a_closed_case_is_delivered_and_the_case_stays_closed(console: Console) -> None:
    await console.staff("wang", StaffRole.SUPERVISOR)
    number = await console.case()
    await console.post("wang", f"{number}/status", {"status": "closed", "note": "经核查，已办结。"})
    answered = (await console.post("wang", f"{number}/answer", {"text": "补充答复：整改已完成。"})).json()
    assert (answered["status"], answered["trace"][-1]["kind"], answered["trace"][-1]["body"]) == (
        "closed", "answered", "补充答复：整改已完成。")
    assert console.woken == ["outbox"]


async def test_a_reviewer_takes_a_case_and_only_a_supervisor_hands_one_to_a_colleague(console: Console) -> None:
    await console.staff("li", queues=("clean_hall",))
    await console.staff("zhao", queues=("clean_hall",))
    await console.staff("chen", queues=("triage",))
    await console.staff("gone", queues=("clean_hall",), active=False)
    await console.staff("wang", StaffRole.SUPERVISOR)
    number = await console.case()

    taken = await console.post("li", f"{number}/assign", {"username": "li"})
    assert (taken.status_code, taken.json()["assignee"]) == (200, "li")
    assert _outcome(await console.post("li", f"{number}/assign", {"username": "zhao"})) == (
        403, "only supervisors and administrators may do this")
    assert _outcome(await console.post("wang", f"{number}/assign", {"username": "chen"})) == (
        422, "chen 同志 does not work in queue clean_hall")  # by display name, as the console names colleagues
    assert _outcome(await console.post("wang", f"{number}/assign", {"username": "gone"})) == (
        422, "no active staff user 'gone'")
    handed = await console.post("wang", f"{number}/assign", {"username": "zhao"})
    assert handed.json()["assignee"] == "zhao"
    let_go = await console.post("zhao", f"{number}/assign", {"username": None})
    assert let_go.json()["assignee"] is None


async def test_a_duplicate_points_to_another_case_the_user_may_see(console: Console) -> None:
    await console.staff("li", queues=("clean_hall",))
    number, elsewhere = await console.case("clean_hall"), await console.case("petitions")

    assert _outcome(await console.post("li", f"{number}/duplicate", {"of": number})) == (
        422, "a case cannot duplicate itself")  # what was sent is wrong, not the case's state
    assert _outcome(await console.post("li", f"{number}/duplicate", {"of": elsewhere})) == (
        422, f"no case {elsewhere} in your queues")
    assert (await console.get("li", number)).json()["status"] == "routed"


async def test_moving_a_case_to_the_queue_it_is_in_is_refused(console: Console) -> None:
    await console.staff("wang", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall")
    assert _outcome(await console.post("wang", f"{number}/move", {"queue": "clean_hall", "reason": "留在本组"})) == (
        409, "the case is in clean_hall already")


async def test_a_corrected_label_sends_the_case_where_that_label_and_its_district_go(console: Console) -> None:
    await console.staff("wang", StaffRole.SUPERVISOR)
    await console.staff("li", queues=("clean_hall",))
    in_kaifu = await console.case("triage", label="other", district="kaifu")
    nowhere = await console.case("triage", label="other", district=None)
    hall = await console.case("clean_hall", label="slow_service")

    corrected = await console.post("wang", f"{in_kaifu}/label", {"action": "correct", "label": "village_affairs"})
    unsure = await console.post("wang", f"{nowhere}/label", {"action": "correct", "label": "village_affairs"})
    again = await console.post("wang", f"{in_kaifu}/label", {"action": "correct", "label": "village_affairs"})
    gone = await console.post("li", f"{hall}/label", {"action": "correct", "label": "medical"})

    assert (corrected.json()["queue"], corrected.json()["label_status"]) == ("district_kaifu", "corrected")
    assert (unsure.json()["queue"], unsure.json()["label"]) == ("triage", "village_affairs")
    assert _outcome(again) == (409, "the label is village_affairs already")
    assert (gone.status_code, gone.content) == (204, b"")  # it left the reviewer's queues
    assert (await console.get("wang", hall)).json()["queue"] == "clean_medical"


async def test_an_evidence_file_missing_from_storage_is_gone_and_another_cases_file_is_not_found(
        console: Console) -> None:
    await console.staff("wang", StaffRole.SUPERVISOR)
    evidence_dir = console.context.evidence_dir
    evidence_dir.mkdir(parents=True)
    async with console.context.database.sessionmaker.begin() as session:
        conversation = await actions.load_conversation(session, "telegram", "42")
        ids = []
        for name in ("kept.jpg", "lost.jpg"):
            (evidence_dir / name).write_bytes(JPEG)
            stored = await evidence_rows.add_draft_attachment(
                session, conversation, stored_name=name, original_name=name, media_type="image/jpeg",
                size_bytes=len(JPEG), sha256=hashlib.sha256(JPEG).hexdigest())
            ids.append(stored.id)
        case, _ = await file_case(session, attachment_ids=ids)
        other, _ = await file_case(session, reporter_ref="43")
    (evidence_dir / "lost.jpg").unlink()

    kept = await console.get("wang", f"{case.case_number}/evidence/{ids[0]}")
    lost = await console.get("wang", f"{case.case_number}/evidence/{ids[1]}")
    wrong_case = await console.get("wang", f"{other.case_number}/evidence/{ids[0]}")

    assert (kept.status_code, kept.content) == (200, JPEG)
    assert _outcome(lost) == (410, "the evidence file is missing from storage")
    assert _outcome(wrong_case) == (404, "no such evidence file on this case")


def test_a_cursor_survives_its_trip_through_a_link_and_nothing_else_passes_for_one() -> None:
    cursor = queries.CaseCursor(datetime(2026, 3, 1, 8, 30, tzinfo=UTC), 12345)
    assert operations.parse_cursor(operations.cursor_param(cursor), "after") == cursor
    assert operations.parse_cursor("", "after") is None
    for forged in ("abc", "MjAyNg", "%%%", "bm90IGEgY3Vyc29y", "MjAyNi0wMy0wMVQwODozMDowMHwxMg"):
        with pytest.raises(operations.OperationError) as refused:
            operations.parse_cursor(forged, "after")
        assert refused.value.status_code == 422 and "after: not a cursor" in refused.value.message
