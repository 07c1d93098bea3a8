"""What a member of staff typed is never lost when the console refuses it: the refusal (an error page, or the
bulk action's results) shows the text again, to be copied or sent elsewhere; nothing typed into a form is
thrown away silently."""

from __future__ import annotations

import re
from html import unescape

import httpx

from storage.models import StaffRole
from tests.console.conftest import CHECK_TOKEN, OTHER_QUEUE, ConsoleHarness, location

ANSWER = "您反映的窗口无人问题已核实，已责令整改，并对相关人员批评教育。"
KEPT = re.compile(r'<textarea[^>]*readonly[^>]*>(.*?)</textarea>', re.S)


def kept_texts(html: str) -> list[str]:
    return [unescape(found).strip() for found in KEPT.findall(html)]


async def checked_answer(client: httpx.AsyncClient, csrf: str, number: str) -> str:
    page = await client.post(f"/console/case/{number}/answer", data={"csrf": csrf, "text": ANSWER, "action": "check"})
    assert page.status_code == 200, page.text[:300]
    token = CHECK_TOKEN.search(page.text)
    assert token
    return token.group(1)


async def test_a_checked_answer_is_shown_again_when_the_case_was_moved_out_of_the_reviewers_queues(
        console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    await console.user("boss", StaffRole.SUPERVISOR)
    number = await console.case("clean_hall")
    async with console.client() as reviewer, console.client() as supervisor:
        csrf = await console.login(reviewer, "rev")
        boss_csrf = await console.login(supervisor, "boss")
        token = await checked_answer(reviewer, csrf, number)
        location(await supervisor.post(f"/console/case/{number}/move",
                                       data={"csrf": boss_csrf, "queue": OTHER_QUEUE, "reason": "不属于本组"}))
        sent = await reviewer.post(f"/console/case/{number}/answer",
                                   data={"csrf": csrf, "text": ANSWER, "action": "send", "checked": token})
        assert sent.status_code == 404
        assert ANSWER in kept_texts(sent.text)
        assert "not sent" in sent.text
        note = "已电话联系举报人，约定周五回访。"
        refused = await reviewer.post(f"/console/case/{number}/note", data={"csrf": csrf, "body": note})
        assert refused.status_code == 404
        assert note in kept_texts(refused.text)


async def test_a_form_refused_for_an_expired_page_shows_what_was_typed_but_never_a_password(
        console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    async with console.client() as reviewer:
        await console.login(reviewer, "rev")
        question = "请补充事发时间和窗口编号。"
        refused = await reviewer.post(f"/console/case/{number}/more-info", data={"csrf": "stale", "question": question})
        assert refused.status_code == 403
        assert question in kept_texts(refused.text)
        changed = await reviewer.post("/console/account/password", data={
            "csrf": "stale", "current": "correct horse battery staple", "new": "another long passphrase here",
            "repeat": "another long passphrase here"})
        assert changed.status_code == 403
        assert kept_texts(changed.text) == []
        assert "passphrase" not in changed.text and "horse" not in changed.text


async def test_the_bulk_results_show_the_note_again_when_a_case_refused_it(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.SUPERVISOR)
    open_case = await console.case("clean_hall")
    closed = await console.case("clean_hall")
    note = "经核查，反映的问题已于本周整改完毕。"
    async with console.client() as supervisor:
        csrf = await console.login(supervisor, "boss")
        location(await supervisor.post(f"/console/case/{closed}/status",
                                       data={"csrf": csrf, "status": "closed", "note": "已办结"}))
        page = await supervisor.post("/console/cases/bulk", data={
            "csrf": csrf, "cases": [open_case, closed], "action": "status", "status": "answered", "note": note})
        assert page.status_code == 200
        assert note in kept_texts(page.text)
