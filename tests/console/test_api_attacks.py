"""The staff API attacked as an insider and an outsider would: what a cache may keep of an answer that holds a
report or a reporter's identity, texts a reporter would read that say nothing, a cross-site link that exports
identities from a console session, reads of a report that leave no audit entry, cases of other queues changed by a
problem's merge without one, audit-log entries an API token's name could disguise, and case numbers typed on a
Chinese keyboard. Each called in-process as an integration calls it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from storage import staff_actions
from storage.models import AuditEntry, Case, StaffRole, TraceEvent
from tests.console.api_client import ApiClient
from tests.console.conftest import make_context
from tests.factories import console_session, file_case

NAME, PHONE = "欧阳明月", "13987654321"
REPORT = "政务服务中心社保窗口工作人员上班时间玩手机，群众排长队无人办理，态度也很差。"


class Api(ApiClient):
    async def named_case(self, queue: str = "clean_hall") -> str:
        """A case whose reporter gave their name and phone."""
        async with self.context.database.sessionmaker.begin() as session:
            case, _ = await file_case(session, secret_key=self.context.secret_key, queue=queue, description=REPORT,
                                      anonymous=False, reporter_name=NAME, reporter_phone=PHONE)
        return str(case.case_number)

    async def session_of(self, username: str) -> tuple[httpx.AsyncClient, str]:
        """A client holding `username`'s console login (its cookie), and the login's CSRF token."""
        async with self.context.database.read_sessionmaker() as session:
            user = await staff_actions.get_staff_by_username(session, username)
        assert user is not None
        cookies, csrf = await console_session(self.context, user)
        return httpx.AsyncClient(transport=self.client._transport, base_url="http://console.test",
                                 cookies=cookies), csrf

    async def audit(self, case_number: str | None = None, action: str | None = None) -> list[AuditEntry]:
        async with self.context.database.read_sessionmaker() as session:
            query = select(AuditEntry).order_by(AuditEntry.id)
            if case_number is not None:
                query = query.join(Case, Case.id == AuditEntry.case_id).where(Case.case_number == case_number)
            if action is not None:
                query = query.where(AuditEntry.action == action)
            return list((await session.execute(query)).scalars())

    async def trace(self, case_number: str) -> list[TraceEvent]:
        async with self.context.database.read_sessionmaker() as session:
            query = (select(TraceEvent).join(Case, Case.id == TraceEvent.case_id)
                     .where(Case.case_number == case_number).order_by(TraceEvent.id))
            return list((await session.execute(query)).scalars())


@pytest.fixture
async def api(database: Any, tmp_path: Path) -> AsyncIterator[Api]:
    built = Api(make_context(database, tmp_path))
    async with built.client:
        await built.staff("li", StaffRole.REVIEWER, ("clean_hall",))
        await built.staff("wang", StaffRole.SUPERVISOR)
        await built.staff("root", StaffRole.ADMIN)
        yield built


async def test_no_answer_that_holds_a_report_or_an_identity_may_be_kept_by_a_browser_or_proxy(api: Api) -> None:
    """Before, only an evidence download said `no-store`: a reporter's name and phone from a reveal, a case's report,
    an export with identities and the audit log could stay in a shared proxy's or the browser's disk cache."""
    number = await api.named_case()
    answers = [
        await api.call("wang", "GET", f"cases/{number}"),
        await api.call("wang", "GET", "cases"),
        await api.call("wang", "GET", f"cases/{number}/notes"),
        await api.call("wang", "POST", f"cases/{number}/reveal-identity", {"reason": "核实举报线索"}),
        await api.call("wang", "GET", "export/cases", params={"identity": "true", "reason": "核实举报线索"}),
        await api.call("root", "GET", "audit.csv"),
        await api.call("li", "GET", f"cases/{number}"),  # a refusal too
    ]
    assert [answer.status_code for answer in answers] == [200, 200, 200, 200, 200, 200, 200]
    assert NAME in answers[3].text and NAME in answers[4].content.decode("utf-8-sig")
    assert [answer.headers.get("cache-control") for answer in answers] == ["no-store"] * len(answers)
    refused = await api.call("li", "GET", "cases/QL-2026-999999")
    assert refused.status_code == 404 and refused.headers.get("cache-control") == "no-store"


@pytest.mark.parametrize("field", ["note", "referral"])
async def test_a_rejection_through_the_api_needs_a_reason_and_a_referral_the_reporter_can_read(
        api: Api, field: str) -> None:
    """The page cleans what staff write for a reporter; the API's status note did not: a rejection whose reason or
    referral was a zero-width space was sent, and the reporter read a rejection that said nothing."""
    number = await api.case()
    body = {"status": "rejected", "note": "不属于本平台受理范围", "referral": "请向区信访局反映",
            field: "\u200b\u2066\u2069"}
    refused = await api.call("wang", "POST", f"cases/{number}/status", body)
    assert refused.status_code == 422, refused.text
    assert "rejection needs" in refused.json()["detail"]
    assert (await api.call("wang", "GET", f"cases/{number}")).json()["status"] == "routed"
    rejected = await api.call("wang", "POST", f"cases/{number}/status", {
        "status": "rejected", "note": "不属于\u202e本平台受理范围\u0000", "referral": "请向区信访局反映\u200b"})
    assert rejected.status_code == 200, rejected.text
    assert (await api.trace(number))[-1].body == "不属于本平台受理范围\n请向区信访局反映"


async def test_a_status_note_or_an_extension_decision_note_of_invisible_characters_is_no_note(api: Api) -> None:
    number = await api.case()
    changed = await api.call("wang", "POST", f"cases/{number}/status",
                             {"status": "in_handling", "note": "\u200b\u0007"})
    assert changed.status_code == 200, changed.text
    assert (await api.trace(number))[-1].body is None


async def test_an_identity_export_from_a_console_session_needs_the_csrf_header(api: Api) -> None:
    """A GET with the session cookie: a link on another site (the cookie is SameSite=Lax, sent with a top-level
    navigation) made a supervisor's browser export the reporters' names and phones and record a reveal of each, in
    the supervisor's name and with the reason the link chose. The page's identity export is a form with its CSRF
    token; the API's asks for the `X-CSRF-Token` header from a session (a token needs none)."""
    number = await api.named_case()
    client, csrf = await api.session_of("wang")
    async with client:
        query = {"identity": "true", "reason": "例行核查工作"}
        forged = await client.get("/api/v1/export/cases", params=query)
        assert forged.status_code == 403 and "CSRF" in forged.json()["detail"]
        assert NAME not in forged.text
        assert await api.audit(number, "case.reveal_identity") == []
        assert await api.audit(action="case.export") == []
        plain = await client.get("/api/v1/export/cases")  # without identities: no reveal, no header needed
        assert plain.status_code == 200 and NAME not in plain.content.decode("utf-8-sig")
        asked = await client.get("/api/v1/export/cases", params=query, headers={"X-CSRF-Token": csrf})
        assert asked.status_code == 200 and NAME in asked.content.decode("utf-8-sig")
    assert len(await api.audit(number, "case.reveal_identity")) == 1
    by_token = await api.call("wang", "GET", "export/cases", params=query)
    assert by_token.status_code == 200


async def test_checking_an_answer_through_the_api_is_audited_as_a_read_of_the_case(api: Api) -> None:
    """The check names the words of the report an answer leaves out: it reads the report. On the ticket page it is
    part of an audited view of the ticket; through the API it left no entry at all."""
    number = await api.case(REPORT)
    checked = await api.call("li", "POST", f"cases/{number}/answer/check", {"text": "已收到。"})
    assert checked.status_code == 200, checked.text
    missing = [reason["zh"] for reason in checked.json()["reasons"] if reason["code"] == "missing_phrases"]
    assert missing and "窗口" in missing[0]
    assert [entry.action for entry in await api.audit(number)] == ["case.view"]
    other = await api.case(REPORT, queue="work_style", reporter="resident-2")
    problem = await api.call("wang", "POST", "problems", {"cases": [number, other]})
    assert problem.status_code == 201, problem.text
    before = len(await api.audit(number, "case.view"))
    scored = await api.call("wang", "POST", f"problems/{problem.json()['id']}/answer/check", {"text": "已收到。"})
    assert scored.status_code == 200, scored.text
    assert len(await api.audit(number, "case.view")) == before + 1  # the problem's oldest case, which it is scored on


async def test_a_merge_of_problems_audits_each_case_it_moves_also_in_other_queues(api: Api) -> None:
    """A reviewer who links two of their cases that are in two problems merges the problems: the other queues'
    cases of the second one moved to the first with an internal trace event but no audit entry, so the audit log
    did not say who changed them. Likewise a case left alone when a colleague's case leaves its problem."""
    own_a, own_b = await api.case(REPORT), await api.case(REPORT, reporter="resident-2")
    other_a = await api.case(REPORT, queue="work_style", reporter="resident-3")
    other_b = await api.case(REPORT, queue="work_style", reporter="resident-4")
    first = await api.call("wang", "POST", "problems", {"cases": [own_a, other_a]})
    second = await api.call("wang", "POST", "problems", {"cases": [own_b, other_b]})
    assert (first.status_code, second.status_code) == (201, 201)
    merged = await api.call("li", "POST", "problems", {"cases": [own_a, own_b]})
    assert merged.status_code == 201, merged.text
    assert (merged.json()["id"], merged.json()["hidden"]) == (first.json()["id"], 2)
    moved = [(entry.actor_id, entry.detail.get("problem")) for entry in await api.audit(other_b, "case.link_problem")]
    li = (await api.audit(own_a, "case.link_problem"))[-1].actor_id
    assert moved[-1] == (li, first.json()["id"])
    # li takes their two cases out; the problem is left with the two of work_style, then one leaves it
    for number in (own_a, own_b):
        assert (await api.call("li", "DELETE", f"cases/{number}/problem")).status_code == 204
    assert (await api.call("wang", "DELETE", f"cases/{other_a}/problem")).status_code == 204
    dissolved = await api.audit(other_b, "case.leave_problem")
    assert [(entry.detail.get("problem")) for entry in dissolved] == [first.json()["id"]]
    assert (await api.trace(other_b))[-1].detail.get("left") == first.json()["id"]


async def test_an_api_tokens_name_cannot_disguise_the_audit_log(api: Api) -> None:
    """The token's name is written into every audit entry of what it does: a name with a right-to-left override
    made "‮lanoitnetni" read as "intentional" in the audit log."""
    client, csrf = await api.session_of("li")
    async with client:
        invisible = await client.post("/api/v1/tokens", json={"name": "\u200b\u2060"}, headers={"X-CSRF-Token": csrf})
        assert invisible.status_code == 422, invisible.text
        made = await client.post("/api/v1/tokens", json={"name": "\u202eevil\u0000"}, headers={"X-CSRF-Token": csrf})
        assert made.status_code == 201, made.text
        assert made.json()["name"] == "evil"


@pytest.mark.parametrize("typed", ["ＱＬ－２０２６－{digits}", "QL-2026-{digits}\u200b", " QL-2026-{digits}\u2069"])
async def test_a_case_number_typed_on_a_chinese_keyboard_or_pasted_with_invisible_marks_opens_the_case(
        api: Api, typed: str) -> None:
    number = await api.case()
    digits = number.rsplit("-", 1)[1]
    variant = typed.format(digits="".join(chr(ord(d) + 0xFEE0) for d in digits) if "Ｑ" in typed else digits)
    opened = await api.call("li", "GET", f"cases/{variant}")
    assert opened.status_code == 200, opened.text
    assert opened.json()["case_number"] == number
    other = await api.case(reporter="resident-2")
    duplicate = await api.call("li", "POST", f"cases/{other}/duplicate", {"of": variant})
    assert duplicate.status_code == 200, duplicate.text
    assert duplicate.json()["duplicate_of"] == number


async def test_a_body_must_be_json_that_means_one_thing(api: Api) -> None:
    """A key given twice was read as its last value (a proxy or log reading the first records another request than
    the one done); a body sent as text or a form was refused with "Input should be a valid dictionary", which does not
    say what to change."""
    number = await api.case()
    headers = {"Authorization": f"Bearer {api.tokens['wang']}"}

    async def sent(content: bytes, content_type: str | None = "application/json") -> httpx.Response:
        typed = {"Content-Type": content_type} if content_type else {}
        return await api.client.post(f"/api/v1/cases/{number}/notes", content=content, headers={**headers, **typed})

    twice = await sent('{"body": "可以公开", "body": "举报人是前同事"}'.encode())
    assert (twice.status_code, twice.json()["detail"]) == (422, "the JSON body gives the key 'body' twice")
    nested = await sent(b'{"body": "x", "extra": {"a": 1, "a": 2}}')
    assert nested.status_code == 422 and "twice" in nested.json()["detail"]
    for word in ("NaN", "Infinity", "-Infinity"):
        constant = await sent(f'{{"body": {word}}}'.encode())
        assert (constant.status_code, constant.json()["detail"]) == (422, f"{word} is not a JSON number")
    for content_type in ("text/plain", "application/x-www-form-urlencoded", "multipart/form-data; boundary=x", None):
        typed = await sent(b'{"body": "x"}', content_type)
        assert typed.status_code == 415, (content_type, typed.text)
        assert "Content-Type: application/json" in typed.json()["detail"]
    broken = await sent(b'{"body": ')
    assert broken.status_code == 422 and "JSON decode error" in broken.text
    assert (await sent(b"")).status_code == 422  # the body is required: FastAPI says so
    for content_type in ("application/json; charset=utf-8", "application/merge-patch+json", "Application/JSON"):
        accepted = await sent('{"body": "一条备注"}'.encode(), content_type)
        assert accepted.status_code == 201, (content_type, accepted.text)
    assert [entry.action for entry in await api.audit(number)] == ["case.note"] * 3


# --- the console's pages --------------------------------------------------------------------------------------


async def test_an_unknown_page_opened_before_a_new_password_is_chosen_is_a_404_page(api: Api) -> None:
    """The error page looked for the user to show in its header; for an account that must choose a new password
    first that raised the redirect to the account page inside the app's error handler: a 500."""
    async with api.context.database.sessionmaker.begin() as session:
        user = await staff_actions.get_staff_by_username(session, "li")
        assert user is not None
        user.must_change_password = True
    client, _csrf = await api.session_of("li")
    async with client:
        missing = await client.get("/console/no-such-page")
        assert missing.status_code == 404 and "404" in missing.text
        assert missing.headers["cache-control"] == "no-store"
        assert (await client.get("/console/cases")).headers["location"] == "/console/account"


async def test_a_bulk_move_needs_a_reason_that_says_something(api: Api) -> None:
    """A ticket's move form cleans its reason; the bulk form took one of invisible characters as a reason."""
    number = await api.case()
    client, csrf = await api.session_of("wang")
    async with client:
        refused = await client.post("/console/cases/bulk", data={
            "csrf": csrf, "cases": [number], "action": "move", "queue": "work_style", "reason": "\u200b\u2066\u2069"})
        assert refused.status_code == 422, refused.text
        moved = await client.post("/console/cases/bulk", data={
            "csrf": csrf, "cases": [number], "action": "move", "queue": "work_style", "reason": "\u202e归口不对\u0000"})
        assert moved.status_code == 200, moved.text
    moves = await api.audit(number, "case.move")
    assert [entry.detail["reason"] for entry in moves] == ["归口不对"]


@pytest.mark.parametrize("until", ["0001-01-01", "2020-02-29"])
async def test_an_extension_to_a_day_that_has_passed_is_refused(api: Api, until: str) -> None:
    """A case without a resolve-by date took any day as its new one, the year 1 too: approved, the case was overdue
    at once."""
    number = await api.named_case()  # filed without deadlines
    asked = await api.call("li", "POST", f"cases/{number}/extension", {"until": until, "reason": "需要补充调查"})
    assert (asked.status_code, asked.json()["detail"]) == (422, f"the new resolve-by date ({until}) has passed already")
    assert await api.audit(number, "case.extension_requested") == []
    client, csrf = await api.session_of("li")
    async with client:
        page = await client.post(f"/console/case/{number}/extension",
                                 data={"csrf": csrf, "until": until, "reason": "需要补充调查"})
    assert page.status_code == 422 and "已经过去" in page.text and "has passed already" in page.text
