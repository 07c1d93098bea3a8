"""A reviewer's day (issue 14.5): information from a reporter flags the case until its handler opens it, with a
notice to the assignee; canned replies per queue; actions on a selection; deadline countdowns; the identity
reveal asks for a reason and survives a reload; promote and rollback ask first; training progress as JSON."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from sqlalchemy import select

from handlers.routing import add_working_days, warning_horizon
from storage import actions, loop
from storage.models import Case, StaffRole, utcnow
from tests.console.conftest import ConsoleHarness, answer_on_page, location

FOLLOW_UP = "补充：那天下午三点又去了一次，还是没人。"


async def follow_up(console: ConsoleHarness, number: str, text: str = FOLLOW_UP) -> None:
    """What the dialog does when the reporter adds information: the follow-up, which notifies the assignee in the
    same transaction."""
    async with console.database.sessionmaker.begin() as session:
        case = (await session.execute(select(Case).where(Case.case_number == number))).scalar_one()
        await actions.add_follow_up(session, case, text=text)


async def test_a_follow_up_flags_the_case_until_its_assignee_opens_it(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    await console.user("sup", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall")
    quiet = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        await client.post(f"/console/case/{number}/assign", data={"csrf": csrf, "username": "rev"})
        await client.get(f"/console/case/{number}")
        await follow_up(console, number)
        overview = (await client.get("/console")).text
        assert re.search(r'id="unread-total"><b>1</b>', overview)
        assert '<a class="tag news" href="/console/queue/clean_hall">1 <span class="bi">新' in overview
        assert re.search(r'href="/console/notices" class="notices has-new"[^>]*><span class="bi">通知.{0,60}'
                         r'<b class="count">1</b>', overview)
        listing = (await client.get("/console/queue/clean_hall")).text
        assert _rows(listing) == {number: True, quiet: False}
        notices = (await client.get("/console/notices")).text
        assert f'<a href="/console/case/{number}">{number}</a>' in notices and "未读" in notices
    async with console.client() as client:  # a supervisor looking at it does not read it for the assignee
        await console.login(client, "sup")
        await client.get(f"/console/case/{number}")
        assert _rows((await client.get("/console/queue/clean_hall")).text)[number] is True
    async with console.client() as client:
        await console.login(client, "rev")
        await client.get(f"/console/case/{number}")
        assert _rows((await client.get("/console/queue/clean_hall")).text) == {number: False, quiet: False}
        overview = (await client.get("/console")).text
        assert re.search(r'id="unread-total"><b>0</b>', overview) and 'class="count"' not in overview
        assert "已读" in (await client.get("/console/notices")).text


async def test_an_unassigned_case_is_read_by_whoever_opens_it(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    await follow_up(console, number)
    async with console.client() as client:
        await console.login(client, "rev")
        assert _rows((await client.get("/console/cases")).text) == {number: True}
        assert (await client.get("/console/notices")).text.count("/console/case/") == 0  # nobody to notify
        await client.get(f"/console/case/{number}")
        assert _rows((await client.get("/console/cases")).text) == {number: False}
        await follow_up(console, number, "又补充一张照片的说明。")
        assert _rows((await client.get("/console/cases")).text) == {number: True}


def _rows(listing: str) -> dict[str, bool]:
    """case number → whether its row carries the unread mark."""
    found = re.findall(r'<tr class="([^"]*)">\s*<td class="pick"><input type="checkbox" name="cases" value="([^"]+)"',
                       listing)
    return {number: "unread" in classes for classes, number in found}


async def test_canned_replies_are_kept_by_supervisors_and_start_an_answer(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    body = "您好，您反映的窗口问题已转交大厅负责人核查，我们将在五个工作日内答复。"
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        refused = await client.post("/console/replies", data={"csrf": csrf, "queue": "clean_hall", "title": "x",
                                                              "body": "y"})
        assert refused.status_code == 403
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        saved = await client.post("/console/replies", data={"csrf": csrf, "queue": "clean_hall",
                                                            "title": "已转交核查", "body": body})
        assert location(saved) == "/console/replies?done=saved"
        await client.post("/console/replies", data={"csrf": csrf, "queue": "petitions", "title": "信访件", "body": "z"})
    async with console.client() as client:
        await console.login(client, "rev")
        page = (await client.get(f"/console/case/{number}")).text
        keys = re.findall(r'\?reply=([^"#]+)#answer" title="[^"]*">([^<]+)</a>', page)
        assert [title for _key, title in keys] == ["已转交核查"]  # only the replies of the case's queue
        started = (await client.get(f"/console/case/{number}?reply={keys[0][0]}")).text
        assert re.search(r'<textarea name="text"[^>]*>' + body + "</textarea>", started)
        assert "信访件" not in (await client.get("/console/replies")).text  # not one of the reviewer's queues
    assert [e.action for e in await console.audit() if e.action.startswith("canned_reply.")] == [
        "canned_reply.save", "canned_reply.save"]


async def test_bulk_actions_on_a_selection(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    first, second, third = [await console.case("clean_hall") for _ in range(3)]
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        listing = (await client.get("/console/queue/clean_hall")).text
        assert 'form="bulk"' in listing and 'action="/console/cases/bulk"' in listing
        assigned = await client.post("/console/cases/bulk", data={
            "csrf": csrf, "action": "assign", "username": "rev", "cases": [first, second],
            "back": "/console/queue/clean_hall"})
        assert assigned.status_code == 200 and "成功 2 / 2 件" in assigned.text
        rev = await console.staff("rev")
        assert [(await console.get_case(n)).assigned_to_id for n in (first, second, third)] == [rev.id, rev.id, None]
        status = await client.post("/console/cases/bulk", data={
            "csrf": csrf, "action": "status", "status": "in_handling", "note": "统一转办理", "cases": [first, third]})
        assert "成功 2 / 2 件" in status.text
        assert [(await console.get_case(n)).status for n in (first, second, third)] == [
            "in_handling", "routed", "in_handling"]
        no_reason = await client.post("/console/cases/bulk", data={"csrf": csrf, "action": "move",
                                                                   "queue": "petitions", "cases": [first, second]})
        assert no_reason.status_code == 422
        moved = await client.post("/console/cases/bulk", data={"csrf": csrf, "action": "move", "queue": "petitions",
                                                               "reason": "涉及信访事项", "cases": [first, second]})
        assert "成功 2 / 2 件" in moved.text
        assert [(await console.get_case(n)).queue for n in (first, second)] == ["petitions", "petitions"]
        again = await client.post("/console/cases/bulk", data={"csrf": csrf, "action": "move", "queue": "petitions",
                                                               "reason": "涉及信访事项", "cases": [first, third]})
        assert "成功 1 / 2 件" in again.text and "案件已在“信访室（市纪委监委）”队列中" in again.text
        assert "the case is in Letters and Visits office (Discipline Inspection Commission) already" in again.text
        forged = await client.post("/console/cases/bulk", data={"csrf": "nope", "action": "assign", "cases": [third]})
        assert forged.status_code == 403
    moves = [e for e in await console.audit("case.move")]
    assert [e.detail["reason"] for e in moves] == ["涉及信访事项"] * 3
    async with console.client() as client:  # a reviewer may take cases, not hand them to others
        csrf = await console.login(client, "rev")
        refused = await client.post("/console/cases/bulk", data={"csrf": csrf, "action": "assign",
                                                                 "username": "sup", "cases": [third]})
        assert refused.status_code == 403


async def test_a_selection_is_rejected_with_its_reason_and_where_to_turn(console: ConsoleHarness) -> None:
    """The bulk form offers 不予受理 (rejected); a rejection needs the reason and where the reporter can turn
    instead, so the form asks for both and each case is rejected with them (it once had no place for the second:
    every selected case came back "not done")."""
    await console.user("sup", StaffRole.SUPERVISOR)
    first, second = [await console.case("clean_hall") for _ in range(2)]
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        listing = (await client.get("/console/queue/clean_hall")).text
        bulk_form = listing[listing.index('id="bulk"'):]
        assert '<option value="rejected">' in bulk_form and 'name="referral"' in bulk_form
        rejected = await client.post("/console/cases/bulk", data={
            "csrf": csrf, "action": "status", "status": "rejected", "note": "不属于纪检监察机关受理范围",
            "referral": "请向市12345热线反映", "cases": [first, second], "back": "/console/queue/clean_hall"})
        assert rejected.status_code == 200 and "成功 2 / 2 件" in rejected.text
        assert [(await console.get_case(n)).status for n in (first, second)] == ["rejected", "rejected"]
        assert any("请向市12345热线反映" in (event.body or "") for event in await console.trace(first))


async def test_deadlines_count_down_in_colour(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    fresh = await console.case("clean_hall")
    late = await console.case("clean_hall", overdue=True)
    async with console.client() as client:
        await console.login(client, "rev")
        listing = (await client.get("/console/queue/clean_hall")).text
        assert '<script src="/console/static/countdown.js" defer></script>' in listing
        dues = dict(re.findall(r'<a href="/console/case/([^"]+)">.*?<time class="due due-(\w+)"', listing, re.S))
        assert dues == {fresh: "ok", late: "over"}
        ticket = (await client.get(f"/console/case/{late}")).text
        shown = re.search(r'<time class="due due-over"[^>]*>(超期 \d+ 天 \d+ 小时)'
                          r'<span class="en">(\d+ d \d+ h overdue)', ticket)
        assert shown, ticket[:2000]
        # the countdown counts on in the words of the locale texts, which the page hands it
        words = re.search(r'<meta name="countdown-texts"([^>]*)>', ticket)
        assert words is not None and 'data-zh-days="{days} 天 {hours} 小时"' in words.group(1)
        assert 'data-en-overdue="{span} overdue"' in words.group(1)
        assert (await client.get("/console/static/countdown.js")).status_code == 200


async def _due(console: ConsoleHarness, case_number: str, accept_due_at: datetime) -> None:
    async with console.database.sessionmaker.begin() as session:
        case = (await session.execute(select(Case).where(Case.case_number == case_number))).scalar_one()
        case.accept_due_at = accept_due_at


async def test_a_deadline_is_soon_within_the_loops_warning_working_days(console: ConsoleHarness) -> None:
    """Amber as the staff are warned: within `loop.warn_working_days` (2) working days with the city's holidays,
    not a fixed two calendar days — the end of the second working day from now is always more than that."""
    city = console.settings.city
    assert city.loop.warn_working_days == 2
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    now = utcnow()
    in_two, in_three = await console.case("clean_hall"), await console.case("clean_hall")
    await _due(console, in_two, add_working_days(city, now, 2))
    await _due(console, in_three, add_working_days(city, now, 3))
    async with console.client() as client:
        await console.login(client, "rev")
        listing = (await client.get("/console/queue/clean_hall")).text
        dues = dict(re.findall(r'<a href="/console/case/([^"]+)">.*?<time class="due due-(\w+)"', listing, re.S))
        assert dues == {in_two: "soon", in_three: "ok"}
        ticket = (await client.get(f"/console/case/{in_two}")).text
        shown = re.search(r'<time class="due due-(\w+)"[^>]*data-soon-until="([^"]+)"', ticket)
        assert shown and shown.group(1) == "soon"
        # countdown.js keeps the colour with the same threshold, as the server computed it
        assert datetime.fromisoformat(shown.group(2)) == warning_horizon(city, utcnow())
        script = (await client.get("/console/static/countdown.js")).text
        assert "data-soon-until" in script


async def test_a_refused_extension_is_in_the_tickets_trace_for_the_staff(console: ConsoleHarness) -> None:
    reviewer = await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    supervisor = await console.user("sup", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall")
    async with console.database.sessionmaker.begin() as session:
        case = (await session.execute(select(Case).where(Case.case_number == number))).scalar_one()
        assert case.resolve_due_at is not None
        request = await loop.request_extension(session, case, actor=reviewer, reason="需调取三个月的监控录像",
                                               resolve_due_at=case.resolve_due_at + timedelta(days=20))
        await loop.decide_extension(session, request, case, actor=supervisor, approve=False, note="先完成初步核查")
    async with console.client() as client:
        await console.login(client, "rev")
        ticket = (await client.get(f"/console/case/{number}")).text
    trace = ticket[ticket.index('id="trace"'):ticket.index('id="notes"')]
    assert "延期未获批准" in trace and "先完成初步核查" in trace and "内部" in trace


async def test_a_reveal_needs_a_reason_and_a_reload_shows_a_page(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall", anonymous=False, name="赵小红", phone="13700001111")
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        no_reason = await client.post(f"/console/case/{number}/reveal", data={"csrf": csrf})
        assert no_reason.status_code == 422 and "赵小红" not in no_reason.text and "<html" in no_reason.text
        revealed = await client.post(f"/console/case/{number}/reveal", data={"csrf": csrf, "reason": "核实后回访"})
        shown = location(revealed)
        assert shown.startswith(f"/console/case/{number}?") and shown.endswith("#identity")
        for _ in range(2):  # the page after the reveal, and reloaded
            page = await client.get(shown)
            assert page.status_code == 200 and "赵小红" in page.text and page.headers["content-type"].startswith(
                "text/html")
        for typed in (f"/console/case/{number}/reveal", f"/console/case/{number}/answer"):  # an action's address
            opened = await client.get(typed)
            assert location(opened) == f"/console/case/{number}"
        unknown = await client.get("/console/nothing-here")
        assert unknown.status_code == 404 and unknown.headers["content-type"].startswith("text/html")
    async with console.client() as client:  # the signed address is the user's own
        await console.login(client, "sup")
        assert "赵小红" in (await client.get(shown)).text
    await console.user("sup2", StaffRole.SUPERVISOR)
    async with console.client() as client:
        await console.login(client, "sup2")
        assert "赵小红" not in (await client.get(shown)).text
    reveals = await console.audit("case.reveal_identity")
    assert [(e.detail, e.ip) for e in reveals] == [({"reason": "核实后回访"}, "127.0.0.1")]


async def test_promote_and_rollback_ask_first(console: ConsoleHarness) -> None:
    from nlp.registry import ModelRegistry

    await console.user("boss", StaffRole.ADMIN)
    current = console.context.classifier.version
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        asked = await client.post("/console/models/promote", data={"csrf": csrf, "version": current or ""})
        assert asked.status_code == 200 and "确认启用模型" in asked.text and 'name="confirm" value="1"' in asked.text
        progress = await client.get("/console/models/training.json")
        assert progress.json()["state"] == "idle"
    assert ModelRegistry(console.context.models_dir).promoted().version == current  # type: ignore[union-attr]
    assert [e.action for e in await console.audit() if e.action.startswith("model.")] == []


async def test_every_audit_entry_of_a_request_has_its_address(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        await client.get(f"/console/case/{number}")
        await client.post(f"/console/case/{number}/accept", data={"csrf": csrf})
        await client.post(f"/console/case/{number}/note", data={"csrf": csrf, "body": "备注"})
        await answer_on_page(client, csrf, f"/console/case/{number}/answer", "已受理")
    entries = [e for e in await console.audit() if e.actor_id is not None]
    # the answer's quality check shows the ticket again with the draft: a view of its own
    assert [e.action for e in entries] == ["login.success", "case.view", "case.accept", "case.note", "case.view",
                                           "case.answer"]
    assert {e.ip for e in entries} == {"127.0.0.1"}
