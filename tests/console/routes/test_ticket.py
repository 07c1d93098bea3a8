"""The ticket page: every action through its form with its trace event and audit record, errors as pages,
revealing identities, evidence files, CSRF and inert report text."""

from __future__ import annotations

import hashlib
import re
import secrets
from datetime import timedelta
from html import unescape
from zoneinfo import ZoneInfo

import httpx
import pytest
from sqlalchemy import select

from console import texts
from handlers.notices import render
from handlers.texts import Texts
from nlp.labels import LABELS
from storage import actions, evidence_rows, loop
from storage.models import (
    ApiToken,
    Case,
    ExtensionRequest,
    InternalNote,
    OutboxMessage,
    StaffRole,
    TraceKind,
)
from tests.console.conftest import ACTIONS, JPEG, PDF, ConsoleHarness, answer_on_page, location
from tests.console.routes.office import page_reason

# A school canteen's contract given to the head's relative: education, or an irregular project? The default model
# hesitates between the two. The window left unattended is plainly slow service.
CLOSE_CALL = "学校食堂的承包项目没有招标，校长的亲戚拿下了工程。"
CLEAR_CALL = "办证窗口工作人员长时间不在岗，群众排队两个小时无人办理。"
RUNNER_UP = re.compile(r'<p class="runner-up" id="runner-up">(.*?)</p>', re.S)
TRACE_ROW = re.compile(r"<tr>((?:(?!</tr>).)*st-extension_refused(?:(?!</tr>).)*)</tr>", re.S)


async def test_every_action_writes_its_trace_event_and_audit_record(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall", "clean_medical"])
    await console.user("colleague", StaffRole.REVIEWER, ["clean_hall"])
    original = await console.case("clean_hall")
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")

        async def act(action: str, **data: str) -> httpx.Response:
            response = await client.post(f"/console/case/{number}/{action}", data={"csrf": csrf, **data})
            assert response.status_code == 303, (action, response.text[:500])
            return response

        await act("accept")
        assert (await console.get_case(number)).status == "accepted"
        assert (await console.trace(number))[-1].kind == TraceKind.ACCEPTED
        page = await client.get(location(await act("confirm-label")))
        assert "分类已确认" in page.text
        assert (await console.get_case(number)).label_status == "confirmed"

        await act("assign", username="rev")  # a reviewer takes a case; supervisors assign to others
        assert (await console.get_case(number)).assigned_to_id == (await console.staff("rev")).id
        await act("note", body="电话联系了窗口负责人")
        await act("status", status="in_handling", note="已转交窗口负责人核查")
        assert (await console.trace(number))[-1].body == "已转交窗口负责人核查"
        unchecked = await client.post(f"/console/case/{number}/answer", data={
            "csrf": csrf, "text": "经核实，相关人员已被批评教育。", "action": "send", "checked": "0" * 64})
        assert unchecked.status_code == 200 and "答复质量检查" in unchecked.text  # checked first, not sent
        assert (await console.trace(number))[-1].kind == TraceKind.IN_HANDLING
        foreign = await client.post(f"/console/case/{number}/answer", data={  # answered 500 (attack1)
            "csrf": csrf, "text": "经核实，相关人员已被批评教育。", "action": "send", "checked": "密" * 64})
        assert foreign.status_code == 200 and "答复质量检查" in foreign.text
        answered = await answer_on_page(client, csrf, f"/console/case/{number}/answer",
                                        "经核实，相关人员已被批评教育。")
        assert answered.status_code == 303 and location(answered).endswith("#trace")
        trace = await console.trace(number)
        assert (trace[-1].kind, trace[-1].body) == (TraceKind.ANSWERED, "经核实，相关人员已被批评教育。")

        corrected = await act("correct-label", label="medical")  # routes to clean_medical, still theirs
        assert location(corrected).startswith(f"/console/case/{number}")
        case = await console.get_case(number)
        assert (case.label, case.label_status, case.predicted_label, case.queue) == (
            "medical", "corrected", "slow_service", "clean_medical")
        moves = [event for event in await console.trace(number) if event.kind == TraceKind.ROUTED]
        assert moves[-1].detail["queue"] == "clean_medical"  # an internal hop; the reporter reads "transferred"
        # the reporter's row of that move said nothing on the ticket (an empty details cell): it says what they read
        ticket = (await client.get(f"/console/case/{number}")).text
        [row] = re.findall(r"<tr>(?:(?!</tr>).)*st-transferred(?:(?!</tr>).)*</tr>", ticket, re.S)
        assert "已转交责任部门办理" in row and "Transferred to the responsible office" in row, row

        await act("duplicate", original=original)
        assert (await console.get_case(number)).status == "duplicate"
        assert (await console.trace(number))[-1].body == original

        # a closed case (a duplicate is one) is reopened before it moves
        await act("status", status="in_handling", note="并非重复件，继续办理")
        # out of the reviewer's own queues: one of the configured reasons as well as the free text (issue 13)
        moved = await act("move", queue="petitions", reason="涉及收受红包",
                          reason_code="不属于本单位职责 Not this office's remit")
        assert location(moved) == "/console?done=moved_away"  # the reviewer does not work in petitions
        assert (await console.get_case(number)).queue == "petitions"

    audit = [(entry.action, entry.detail) for entry in await console.audit(case_number=number)
             if entry.action != "case.view"]
    assert [action for action, _ in audit] == [
        "case.accept", "case.confirm_label", "case.assign", "case.note", "case.status", "case.answer",
        "case.correct_label", "case.move", "case.duplicate", "case.status", "case.move"]
    assert dict(audit)["case.assign"] == {"to": "rev"}
    assert audit[-1][1]["reason"] == "涉及收受红包"
    assert [e.kind for e in await console.trace(number)] == [
        TraceKind.RECEIVED, TraceKind.ROUTED, TraceKind.ACCEPTED, TraceKind.IN_HANDLING, TraceKind.ANSWERED,
        TraceKind.ROUTED, TraceKind.TRANSFERRED, TraceKind.DUPLICATE, TraceKind.IN_HANDLING,
        TraceKind.ROUTED]  # "transferred" once
    async with console.database.read_sessionmaker() as session:
        notes = (await session.execute(select(InternalNote))).scalars().all()
        assert [note.body for note in notes] == ["电话联系了窗口负责人"]
        answers = [m.payload for m in (await session.execute(select(OutboxMessage))).scalars()
                   if m.payload.get("notice") == "answer"]
        assert answers == [{"notice": "answer", "locale": "zh", "case_number": number,
                            "answer": "经核实，相关人员已被批评教育。"}]


async def test_asking_the_reporter_for_more_information(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        page = (await client.get(f"/console/case/{number}")).text
        assert f'action="/console/case/{number}/more-info"' in page
        empty = await client.post(f"/console/case/{number}/more-info", data={"csrf": csrf, "question": "  "})
        assert empty.status_code == 422 and "<html" in empty.text
        asked = await client.post(f"/console/case/{number}/more-info",
                                  data={"csrf": csrf, "question": "请提供窗口编号和当天的排队小票照片。"})
        assert asked.status_code == 303 and location(asked).endswith("#delivery")
        shown = (await client.get(location(asked))).text
        assert "已请举报人补充信息" in shown and "请补充信息" in shown  # the flash, and the notice's delivery row
    trace = await console.trace(number)
    assert (trace[-1].kind, trace[-1].body) == (TraceKind.MORE_INFO, "请提供窗口编号和当天的排队小票照片。")
    assert [(e.action, e.detail) for e in await console.audit("case.more_info_asked", number)] == [
        ("case.more_info_asked", {"question": "请提供窗口编号和当天的排队小票照片。"})]
    async with console.database.read_sessionmaker() as session:
        sent = [m.payload for m in (await session.execute(select(OutboxMessage))).scalars()
                if m.kind == "more_info"]
    assert sent == [{"notice": "more_info", "locale": "zh", "case_number": number,
                     "question": "请提供窗口编号和当天的排队小票照片。",
                     "choices": [[f"case:follow_up@{(await console.get_case(number)).id}", "补充材料"]]}]


async def test_moving_needs_a_reason_and_errors_are_pages(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        response = await client.post(f"/console/case/{number}/move", data={"csrf": csrf, "queue": "petitions",
                                                                            "reason": "  "})
        assert response.status_code == 422 and "reason" in response.text and "<html" in response.text
        assert response.headers["x-frame-options"] == "DENY"
        response = await client.post(f"/console/case/{number}/duplicate", data={"csrf": csrf,
                                                                                 "original": "QL-1999-999999"})
        assert response.status_code == 422
        # a form the browser's own checks would have stopped (a field missing, too long): a page, not JSON
        for data in ({"csrf": csrf}, {"csrf": csrf, "body": "x" * 10_001}):
            response = await client.post(f"/console/case/{number}/note", data=data)
            assert response.status_code == 422 and "<html" in response.text and '{"detail"' not in response.text
            assert "body" in response.text
    assert (await console.get_case(number)).queue == "clean_hall"


async def test_a_closed_ticket_offers_no_move_and_a_corrected_label_keeps_it_in_the_queue_that_closed_it(
        console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR, ["clean_hall", "petitions"])
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        closing = await client.post(f"/console/case/{number}/status", data={"csrf": csrf, "status": "closed",
                                                                             "note": "已办结"})
        assert closing.status_code == 303
        page = await client.get(f"/console/case/{number}")
        assert f"/console/case/{number}/move" not in page.text and "需转办请先重新办理" in page.text
        forged = await client.post(f"/console/case/{number}/move", data={
            "csrf": csrf, "queue": "petitions", "reason": "涉及收受礼品"})
        assert forged.status_code == 409 and page_reason(forged) == (
            f"案件 {number} 处于“已办结”状态；要转办，请先重新打开", f"case {number} is Closed: reopen it to move it")
        corrected = await client.post(f"/console/case/{number}/correct-label",
                                      data={"csrf": csrf, "label": "bribery_gifts"})
        assert corrected.status_code == 303 and location(corrected).startswith(f"/console/case/{number}")
    stored = await console.get_case(number)
    assert (stored.label, stored.queue, stored.status, stored.transfer_count) == (
        "bribery_gifts", "clean_hall", "closed", 0)
    assert [event.kind for event in await console.trace(number)][-1] == TraceKind.CLOSED


async def test_closing_on_the_ticket_tells_the_reporter_the_status_once_and_asks_for_the_rating_under_it(
        console: ConsoleHarness) -> None:
    """Closing a case sent the reporter "closed — send /status for details" and then the rating buttons under a
    second "closed": two messages saying the same, one pointing away from the buttons."""
    await console.user("sup", StaffRole.SUPERVISOR, ["clean_hall"])
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        closing = await client.post(f"/console/case/{number}/status", data={"csrf": csrf, "status": "closed",
                                                                             "note": "已责令窗口整改"})
        assert closing.status_code == 303
    case = await console.get_case(number)
    async with console.database.read_sessionmaker() as session:
        payloads = list((await session.execute(select(OutboxMessage.payload).where(
            OutboxMessage.case_id == case.id, OutboxMessage.recipient == case.reporter_ref)
            .order_by(OutboxMessage.id))).scalars())
    words = Texts(console.settings.city.texts)
    told = [render(payload, words, city=console.settings.city) for payload in payloads[-2:]]
    assert [message.text for message in told] == [
        f"您的举报 {number} 已办结。\n说明：已责令窗口整改", "请为办理结果打分（1–5星），或选择“问题没有解决”。"]
    assert "/status" not in told[0].text and len(told[1].choices) == 7


async def test_identity_is_revealed_only_on_an_audited_click_by_permitted_roles(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    await console.user("sup", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall", anonymous=False, name="王小明", phone="13912345678")
    anonymous = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        page = (await client.get(f"/console/case/{number}")).text
        assert "王小明" not in page and "13912345678" not in page and "/reveal" not in page
        assert (await client.post(f"/console/case/{number}/reveal", data={"csrf": csrf})).status_code == 403
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        page = (await client.get(f"/console/case/{number}")).text
        assert "王小明" not in page and f"/console/case/{number}/reveal" in page
        assert "tg-user" not in page  # the channel identity never appears
        assert f"/console/case/{anonymous}/reveal" not in (await client.get(f"/console/case/{anonymous}")).text
        revealed = await client.post(f"/console/case/{number}/reveal", data={"csrf": csrf, "reason": "需要回访核实"},
                                     follow_redirects=True)
        assert revealed.status_code == 200
        assert "王小明" in revealed.text and "13912345678" in revealed.text
    reveals = await console.audit("case.reveal_identity")
    assert [(entry.actor_id, entry.case_id) for entry in reveals] == [
        ((await console.staff("sup")).id, (await console.get_case(number)).id)]


async def test_evidence_images_inline_and_files_as_downloads(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall", attachments=[("photo.jpg", "image/jpeg", JPEG),
                                                           ("notice.pdf", "application/pdf", PDF),
                                                           ("page.html", "text/html", b"<script>alert(1)</script>")])
    async with console.client() as client:
        await console.login(client, "rev")
        page = (await client.get(f"/console/case/{number}")).text
        links = re.findall(rf'/console/case/{number}/evidence/(\d+)', page)
        image_id, pdf_id, html_id = sorted(set(links), key=int)
        assert f'<img src="/console/case/{number}/thumb/{image_id}"' in page  # part of the view, not a download
        image = await client.get(f"/console/case/{number}/evidence/{image_id}")
        assert (image.status_code, image.headers["content-type"], image.content) == (200, "image/jpeg", JPEG)
        assert image.headers["content-disposition"].startswith("inline")
        for attachment_id in (pdf_id, html_id):
            download = await client.get(f"/console/case/{number}/evidence/{attachment_id}")
            assert download.headers["content-type"] == "application/octet-stream"
            assert download.headers["content-disposition"].startswith("attachment")
            assert "sandbox" in download.headers["content-security-policy"]
    assert len(await console.audit("case.download", number)) == 3


@pytest.mark.parametrize("token", [None, "not-the-token"])
async def test_actions_without_the_right_csrf_token_change_nothing(console: ConsoleHarness,
                                                                   token: str | None) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    await console.case("clean_hall")
    number = await console.case("clean_hall", anonymous=False, name="王小明", phone="13912345678")
    before = await console.get_case(number)
    async with console.client() as client:
        await console.login(client, "sup")
        for action, data in ACTIONS:
            form = data if token is None else {"csrf": token, **data}
            response = await client.post(f"/console/case/{number}/{action}", data=form)
            assert response.status_code == 403, (action, response.status_code)
            assert "王小明" not in response.text
        for url, data in (("/console/staff", {"username": "mallory", "role": "admin"}),
                          ("/console/account/tokens", {"name": "x"}),
                          ("/console/models/rollback", {})):
            form = data if token is None else {"csrf": token, **data}
            assert (await client.post(url, data=form)).status_code == 403
    after = await console.get_case(number)
    assert (after.status, after.label, after.queue, after.assigned_to_id, after.label_status) == (
        before.status, before.label, before.queue, before.assigned_to_id, before.label_status)
    assert len(await console.trace(number)) == 2
    assert [e.action for e in await console.audit(case_number=number)] == []
    async with console.database.read_sessionmaker() as session:
        assert (await session.execute(select(ApiToken))).scalars().all() == []


async def test_a_missing_csrf_token_is_a_403(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    async with console.client() as client:
        await console.login(client, "rev")
        response = await client.post(f"/console/case/{number}/accept", data={"csrf": ""})
        assert response.status_code == 403
    assert (await console.get_case(number)).status == "routed"


async def test_report_text_with_html_is_shown_inert(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    text = "窗口人员<script>alert(1)</script>索要好处 <img src=x onerror=alert(2)> 不在岗"
    number = await console.case("clean_hall", description=text, terms=["script", "onerror", "不在岗", "<img"])
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        await client.post(f"/console/case/{number}/note", data={"csrf": csrf, "body": "<b onmouseover=x>注意</b>"})
        await answer_on_page(client, csrf, f"/console/case/{number}/answer", "<script>alert(3)</script>")
        page = (await client.get(f"/console/case/{number}")).text
        listing = (await client.get("/console/cases")).text
    for html in (page, listing):
        assert "<script>alert" not in html and "<img src=x" not in html and "<b onmouseover" not in html
    assert "&lt;<mark>script</mark>&gt;alert(1)&lt;/<mark>script</mark>&gt;" in page
    assert "<mark>&lt;img</mark> src=x <mark>onerror</mark>=alert(2)&gt;" in page
    assert "<mark>不在岗</mark>" in page
    assert "&lt;b onmouseover=x&gt;注意&lt;/b&gt;" in page
    assert "&lt;script&gt;alert(3)&lt;/script&gt;" in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in listing


async def test_a_close_runner_up_is_shown_with_the_phrases_that_decided_against_it(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    close, tag = await console.classified_case(CLOSE_CALL)
    clear, clear_tag = await console.classified_case(CLEAR_CALL)
    assert tag.runner_up is not None and tag.contrast_terms and clear_tag.runner_up is None  # what the model said
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        page = (await client.get(f"/console/case/{close}")).text
        plain = (await client.get(f"/console/case/{clear}")).text
        await client.post(f"/console/case/{close}/correct-label", data={"csrf": csrf, "label": tag.runner_up})
        corrected = (await client.get(f"/console/case/{close}")).text

    shown = RUNNER_UP.search(page)
    assert shown is not None
    assert re.findall(r'<b><span class="bi">([^<]+)<span class="en">([^<]+)</span></span></b>', shown.group(1)) == [
        LABELS[tag.runner_up]]
    assert "not chosen because" in shown.group(1)
    assert re.findall(r"<mark>([^<]+)</mark>", shown.group(1)) == tag.contrast_terms
    assert LABELS[tag.label][0] in page and "runner-up" not in plain and "not chosen because" not in plain
    # staff corrected the label: the line is about what the model weighed
    shown_after = RUNNER_UP.search(corrected)
    assert shown_after is not None and "the model&#39;s runner-up" in shown_after.group(1)


async def test_an_extension_is_requested_with_a_reason_and_only_a_supervisor_decides_it(
        console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    await console.user("sup", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall")
    due = (await console.get_case(number)).resolve_due_at
    assert due is not None
    until = (due + timedelta(days=20)).date().isoformat()
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        unreasoned = await client.post(f"/console/case/{number}/extension",
                                       data={"csrf": csrf, "until": until, "reason": " "})
        assert unreasoned.status_code == 422 and "<html" in unreasoned.text
        for reason in ("需调取三个月的监控录像", "监控录像需公安协助调取"):
            requested = await client.post(f"/console/case/{number}/extension",
                                          data={"csrf": csrf, "until": until, "reason": reason})
            page = (await client.get(location(requested))).text
            assert "延期申请已提交，等待主管审批" in page and reason in page and "pending" in page
            assert f"/console/case/{number}/extension/" not in page  # no decision form for a reviewer
            request_id = max(await _extension_ids(console, number))
            refused = await client.post(f"/console/case/{number}/extension/{request_id}",
                                        data={"csrf": csrf, "decision": "approve"})
            assert refused.status_code == 403
            assert (await console.get_case(number)).resolve_due_at == due
            async with console.client() as boss:
                boss_csrf = await console.login(boss, "sup")
                shown = (await boss.get(f"/console/case/{number}")).text
                assert f'action="/console/case/{number}/extension/{request_id}"' in shown
                decision = {"decision": "refuse", "note": "先完成初步核查"} if reason.startswith("需调取") \
                    else {"decision": "approve", "note": ""}
                decided = await boss.post(f"/console/case/{number}/extension/{request_id}",
                                          data={"csrf": boss_csrf, **decision})
                after = (await boss.get(location(decided))).text
                assert "延期申请已处理" in after
                again = await boss.post(f"/console/case/{number}/extension/{request_id}",
                                        data={"csrf": boss_csrf, "decision": "approve"})
                assert again.status_code == 409
        # the refusal with the supervisor's note is in the staff's trace, marked internal
        row = TRACE_ROW.search(after)
        assert row is not None and "sup 同志" in row.group(1) and "内部" in row.group(1)
        assert "先完成初步核查" in row.group(1) and "approved" in after
    case = await console.get_case(number)
    assert case.resolve_due_at is not None and case.extension_count == 1
    assert case.resolve_due_at.astimezone(ZoneInfo(console.context.city.timezone)).date().isoformat() == until
    assert [e.action for e in await console.audit(case_number=number) if e.action.startswith("case.extension")] == [
        "case.extension_requested", "case.extension_refused", "case.extension_requested", "case.extension_approved"]
    async with console.database.read_sessionmaker() as session:
        told = [m.payload for m in (await session.execute(select(OutboxMessage))).scalars()
                if m.payload.get("case_number") == number]
    assert [payload["notice"] for payload in told] == ["extended"]  # the refusal is not the reporter's business


async def _extension_ids(console: ConsoleHarness, number: str) -> list[int]:
    async with console.database.read_sessionmaker() as session:
        query = select(ExtensionRequest.id).join(Case, Case.id == ExtensionRequest.case_id).where(
            Case.case_number == number)
        return list((await session.execute(query)).scalars())


async def test_a_rejection_needs_where_to_turn_a_note_reaches_the_reporter_and_a_supervisor_decides_the_appeal(
        console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    await console.user("sup", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        told = await client.post(f"/console/case/{number}/tell-reporter",
                                 data={"csrf": csrf, "text": "已转相关科室核查，预计下周反馈。"})
        assert location(told).endswith("#delivery")
        page = (await client.get(location(told))).text
        assert "说明已发送给举报人" in page and "办理说明" in page  # the flash, and the notice's delivery row
        bare = await client.post(f"/console/case/{number}/status",
                                 data={"csrf": csrf, "status": "rejected", "note": "所反映事项属于民事纠纷"})
        assert bare.status_code == 422 and "<html" in bare.text
        assert (await console.get_case(number)).status == "routed"
        rejected = await client.post(f"/console/case/{number}/status", data={
            "csrf": csrf, "status": "rejected", "note": "所反映事项属于民事纠纷",
            "referral": "请拨打12345市民热线咨询"})
        page = (await client.get(location(rejected))).text
        assert "所反映事项属于民事纠纷\n请拨打12345市民热线咨询" in page

        async with console.database.sessionmaker.begin() as session:  # the reporter appeals in the chat
            case = await session.get(Case, (await console.get_case(number)).id)
            assert case is not None
            await loop.appeal(session, case, "这不是民事纠纷，是窗口人员索要好处。", appeal_limit=1)
        assert f'action="/console/case/{number}/appeal"' not in (await client.get(f"/console/case/{number}")).text
        forbidden = await client.post(f"/console/case/{number}/appeal",
                                      data={"csrf": csrf, "decision": "reopen", "reason": "经复核重新受理"})
        assert forbidden.status_code == 403
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        assert f'action="/console/case/{number}/appeal"' in (await client.get(f"/console/case/{number}")).text
        decided = await client.post(f"/console/case/{number}/appeal",
                                    data={"csrf": csrf, "decision": "reopen", "reason": "经复核，转窗口监督组办理。"})
        page = (await client.get(location(decided))).text
        assert "复核决定已作出并告知举报人" in page and f'action="/console/case/{number}/appeal"' not in page
    case = await console.get_case(number)
    assert (case.status, case.appeal_pending) == ("routed", False)
    async with console.database.read_sessionmaker() as session:
        told_reporter = [m.payload for m in (await session.execute(select(OutboxMessage).order_by(OutboxMessage.id)))
                         .scalars() if m.recipient == case.reporter_ref]
    assert [(p["notice"], p.get("note") or p.get("reason")) for p in told_reporter] == [
        ("note", "已转相关科室核查，预计下周反馈。"),
        ("status_changed", "所反映事项属于民事纠纷\n请拨打12345市民热线咨询"),
        ("appeal_decided", "经复核，转窗口监督组办理。")]
    assert [e.action for e in await console.audit(case_number=number) if e.action != "case.view"] == [
        "case.note_to_reporter", "case.status", "case.appeal_decided"]


async def test_the_ticket_reads_as_words_the_ratings_comment_an_extensions_state_and_the_activity(
        console: ConsoleHarness) -> None:
    """Seen on the ticket as a reviewer: the reporter's rating comment was missing, "问题没有解决" showed as no
    stars, an extension's state as "pending", and the activity as "note_id: 2" or "from: medical · to: …"."""
    await console.user("wang", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall")
    unsolved = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "wang")
        for action, data in (("note", {"body": "先电话核实"}), ("correct-label", {"label": "bribery_gifts"})):
            response = await client.post(f"/console/case/{number}/{action}", data={"csrf": csrf, **data})
            assert response.status_code == 303, (action, response.text[:300])
        await answer_on_page(client, csrf, f"/console/case/{number}/answer", "经核查，已对窗口人员批评教育并调整排班。")
        due = (await console.get_case(unsolved)).resolve_due_at
        assert due is not None
        until = (due + timedelta(days=10)).astimezone(ZoneInfo("Asia/Shanghai")).date().isoformat()
        await client.post(f"/console/case/{unsolved}/extension", data={"csrf": csrf, "until": until,
                                                                        "reason": "需调取监控"})
        pending = (await client.get(f"/console/case/{unsolved}")).text
    assert "待审批" in pending and "· pending ·" not in pending
    async with console.database.sessionmaker.begin() as session:
        for case_number, rating, comment in ((number, 4, "处理得还可以，但希望窗口能有监督电话"),
                                             (unsolved, None, "还是没人管")):
            case = await session.scalar(select(Case).where(Case.case_number == case_number))
            assert case is not None
            case.status = "closed"
            await loop.rate(session, case, rating, comment=comment, unsolved=rating is None, rehandle_limit=0)
    async with console.client() as client:
        await console.login(client, "wang")
        page = (await client.get(f"/console/case/{number}")).text
        other = (await client.get(f"/console/case/{unsolved}")).text
    assert "★★★★☆" in page and "处理得还可以，但希望窗口能有监督电话" in page
    assert "问题没有解决" in other and "☆☆☆☆☆" not in other and "还是没人管" in other
    activity = page[page.index("处理记录"):]
    activity = activity[:activity.index("</table>")]
    for raw in ("note_id", "trace_event_id", "slow_service", "bribery_gifts", "status:"):
        assert raw not in activity, raw
    assert "改为：吃拿卡要与违规收送" in activity
    # and in English beside it, with the names of the English console
    assert "label corrected from Poor counter service to Bribes, gifts and banquets" in activity
    assert "from: Clean Hall supervision · to: Letters and Visits office" in activity


async def test_text_with_nothing_visible_is_refused_on_the_ticket(console: ConsoleHarness) -> None:
    """A zero-width space passed every "needs text" check and was sent to the reporter as an answer."""
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        for action, field in (("note", "body"), ("tell-reporter", "text"), ("more-info", "question")):
            refused = await client.post(f"/console/case/{number}/{action}", data={"csrf": csrf, field: "\u200b\u202e"})
            assert refused.status_code == 422, action
        checked = await client.post(f"/console/case/{number}/answer", data={"csrf": csrf, "text": "\u200b",
                                                                           "action": "check"})
        assert checked.status_code == 422
    assert [event.kind for event in await console.trace(number)] == ["received", "routed"]


async def test_a_refused_action_says_what_happened_in_chinese_and_leads_back_to_the_ticket(
        console: ConsoleHarness) -> None:
    """Seen as a reviewer: a second 受理 from a stale tab showed only "case … was accepted already" in English,
    with a link to the overview."""
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        await client.post(f"/console/case/{number}/accept", data={"csrf": csrf})
        again = await client.post(f"/console/case/{number}/accept", data={"csrf": csrf})
    assert again.status_code == 409
    assert "案件的状态已经变化" in again.text and f'<a href="/console/case/{number}">' in again.text


async def test_the_reason_of_a_refusal_is_chinese_with_the_english_beside_it(console: ConsoleHarness) -> None:
    """Seen by a reviewer: under 无法执行 the reason read "case … was accepted already", English only; a case's
    queue and status were codes ("the case is in clean_hall already")."""
    await console.user("boss", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        await client.post(f"/console/case/{number}/accept", data={"csrf": csrf})
        again = await client.post(f"/console/case/{number}/accept", data={"csrf": csrf})
        stays = await client.post(f"/console/case/{number}/move", data={"csrf": csrf, "queue": "clean_hall",
                                                                         "reason": "留在原队列"})
        forbidden = await client.post(f"/console/case/{number}/reveal", data={"csrf": csrf, "reason": " "})
        api = await client.post(f"/api/v1/cases/{number}/accept", headers={"X-CSRF-Token": csrf})
    assert (again.status_code, page_reason(again)) == (
        409, (f"案件 {number} 已经受理", f"case {number} was accepted already"))
    assert (stays.status_code, page_reason(stays)) == (409, (
        "案件已在“清廉大厅监督组（市行政审批服务局）”队列中",
        "the case is in Clean Hall supervision (Administrative Approval Bureau) already"))
    assert (forbidden.status_code, page_reason(forbidden)) == (
        422, ("请说明查看举报人身份的理由，至少 4 个字（标点和空格不计，理由将被记录）",
              "say why you need the reporter's identity in at least 4 letters or digits (the reason is recorded)"))
    assert (api.status_code, api.json()) == (409, {"detail": f"case {number} was accepted already"})


ROUTED_ROW = re.compile(r'<tr>\s*<td class="nowrap">[^<]*</td>\s*<td class="nowrap"><span class="st st-routed".*?</tr>',
                        re.S)


async def test_a_routing_row_of_the_trace_names_queue_and_reason_in_english_too(console: ConsoleHarness) -> None:
    """Seen by an English-reading reviewer: "→ 清廉大厅监督组（市行政审批服务局） （按分类）", Chinese only."""
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    async with console.client() as client:
        await console.login(client, "rev")
        page = await client.get(f"/console/case/{number}")
    row = ROUTED_ROW.search(page.text)
    assert page.status_code == 200 and row is not None
    reason = (await console.trace(number))[-1].detail["reason"]
    assert "Clean Hall supervision (Administrative Approval Bureau)" in row.group(0)
    assert f'<span class="en">{texts.get("en", f"route_reason.{reason}")}</span>' in row.group(0)


async def test_a_reveal_with_a_token_reason_is_refused_on_the_ticket_with_what_was_typed(
        console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall", anonymous=False, name="王小明", phone="13912345678")
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        for token in (".", " 核实 ", "a.b.c", "！？……"):  # fewer than four letters or digits
            refused = await client.post(f"/console/case/{number}/reveal", data={"csrf": csrf, "reason": token})
            assert refused.status_code == 422, token
            assert "王小明" not in refused.text and "13912345678" not in refused.text
            # the ticket again, its reveal form holding what was typed, and why it was refused
            assert f'action="/console/case/{number}/reveal"' in refused.text
            field = re.search(r'<input name="reason"[^>]*value="([^"]*)"', refused.text)
            assert field is not None and unescape(field.group(1)) == token.strip()
            assert page_reason(refused)[1] == ("say why you need the reporter's identity in at least 4 letters or "
                                               "digits (the reason is recorded)")
        revealed = await client.post(f"/console/case/{number}/reveal", data={"csrf": csrf, "reason": "核实线索"},
                                     follow_redirects=True)
        assert revealed.status_code == 200 and "王小明" in revealed.text
    assert [entry.detail for entry in await console.audit("case.reveal_identity")] == [{"reason": "核实线索"}]


def _visible(page: str, section: str) -> str:
    """The text a reader sees in one section of the ticket page (`id="<section>"`), tags and attributes left out."""
    part = page[page.index(f'id="{section}"'):]
    return unescape(re.sub(r"<[^>]+>", " ", part[:part.index("</table>")]))


async def test_the_trace_and_the_activity_name_colleagues_by_their_names_not_their_usernames(
        console: ConsoleHarness) -> None:
    """The trace said "wangfang" under 王芳 and the activity "wangfang … assigned to lihua", where the lists, the
    notes and the assignee say 王芳 and 李华; the username stays at hand for an auditor, as the name's title."""
    for username, name, role in (("wangfang", "王芳", StaffRole.SUPERVISOR), ("lihua", "李华", StaffRole.REVIEWER)):
        user = await console.user(username, role, ["clean_hall"])
        async with console.database.sessionmaker.begin() as session:
            (await session.get(type(user), user.id)).display_name = name  # type: ignore[union-attr]
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "wangfang")
        for action, data in (("accept", {}), ("assign", {"username": "lihua"}), ("note", {"body": "请核实"})):
            response = await client.post(f"/console/case/{number}/{action}", data={"csrf": csrf, **data})
            assert response.status_code == 303, (action, response.text[:300])
        page = (await client.get(f"/console/case/{number}")).text
    trace, activity = _visible(page, "trace"), _visible(page, "activity")
    assert "王芳" in trace and "wangfang" not in trace
    assert "王芳" in activity and "李华" in activity
    assert "wangfang" not in activity and "lihua" not in activity
    assert 'title="wangfang">王芳<' in page


async def test_assigning_to_a_colleague_outside_the_queue_is_refused_naming_them_by_name(
        console: ConsoleHarness) -> None:
    """The supervisor picked 李华 from the list of names and was told "lihua does not work in queue …"."""
    await console.user("wangfang", StaffRole.SUPERVISOR)
    user = await console.user("lihua", StaffRole.REVIEWER, ["clean_hall"])
    async with console.database.sessionmaker.begin() as session:
        (await session.get(type(user), user.id)).display_name = "李华"  # type: ignore[union-attr]
    number = await console.case("clean_medical", label="medical")
    async with console.client() as client:
        csrf = await console.login(client, "wangfang")
        refused = await client.post(f"/console/case/{number}/assign", data={"csrf": csrf, "username": "lihua"})
    assert refused.status_code == 422
    assert page_reason(refused) == ("李华 不负责队列“医疗医保监督组（市卫健委、市医保局）”",
                                    "李华 does not work in queue Clean Medical supervision (Health Commission, "
                                    "Medical Insurance Bureau)")
    assert (await console.get_case(number)).assigned_to_id is None


async def test_a_follow_up_that_brought_files_names_them_in_its_trace_row(console: ConsoleHarness) -> None:
    """The reporter sent a photo and a PDF as added information: the trace showed "补充材料 Follow-up" with an empty
    details cell, and the evidence list did not tell them from the report's own file, so the reviewer could not
    see what the follow-up had brought."""
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall", attachments=[("report.jpg", "image/jpeg", JPEG)])
    console.settings.evidence_dir.mkdir(parents=True, exist_ok=True)
    async with console.database.sessionmaker.begin() as session:
        case = (await session.execute(select(Case).where(Case.case_number == number))).scalar_one()
        conversation = await actions.load_conversation(session, "telegram", "tg-follow-up")
        ids = []
        for media_type, content in (("image/jpeg", JPEG), ("application/pdf", PDF)):
            stored = secrets.token_hex(12)
            (console.settings.evidence_dir / stored).write_bytes(content)
            ids.append((await evidence_rows.add_draft_attachment(
                session, conversation, stored_name=stored, original_name="<b>x</b>", media_type=media_type,
                size_bytes=len(content), sha256=hashlib.sha256(content).hexdigest())).id)
        await actions.add_follow_up(session, case, text=None, attachment_ids=ids)
    async with console.client() as client:
        await console.login(client, "rev")
        page = (await client.get(f"/console/case/{number}")).text
    rows = re.findall(r"<tr>((?:(?!</tr>).)*st-follow_up(?:(?!</tr>).)*)</tr>", page, re.S)
    assert len(rows) == 1
    assert re.findall(rf'href="/console/case/{number}/evidence/(\d+)"[^>]*>([^<]+)</a>', rows[0]) == [
        (str(ids[0]), "evidence-2.jpg"), (str(ids[1]), "evidence-3.pdf")]
    assert "<b>x</b>" not in page
