"""The console's pages: login, two factors and throttling; permissions; every action through its form
with its trace event and audit record; CSRF; XSS; administration pages."""

from __future__ import annotations

import re
from datetime import timedelta
from pathlib import Path

import httpx
import pyotp
import pytest
from sqlalchemy import select

from bot.app import create_app
from console import pages
from storage.models import ApiToken, InternalNote, OutboxMessage, StaffRole, StaffSession, TraceKind, utcnow
from tests.console.conftest import (
    JPEG,
    PASSWORD,
    PDF,
    ConsoleHarness,
    csrf_of,
    fresh_data_dir,
    make_settings,
    settle_background_tasks,
)

OTHER_QUEUE = "work_style"


def location(response: httpx.Response) -> str:
    assert response.status_code == 303, (response.status_code, response.text[:500])
    return response.headers["location"]


# --- first start, login, sessions -------------------------------------------------------------


async def test_first_start_creates_a_marked_demo_admin_who_can_log_in(
        tmp_path: Path, data_template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(fresh_data_dir(data_template, tmp_path / "data"))
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        printed = capsys.readouterr().out
        found = re.search(r"administrator 'demo-admin' with password (\S+)", printed)
        assert "DEMO ONLY" in printed and found, printed
        harness = ConsoleHarness(app, settings, "")
        async with harness.client() as client:
            await harness.login(client, "demo-admin", found.group(1))
            assert "人员" in (await client.get("/console/staff")).text
        await settle_background_tasks()
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert "demo-admin" not in capsys.readouterr().out  # only on an empty staff table
        await settle_background_tasks()


async def test_production_first_start_prints_instructions_and_creates_nobody(
        tmp_path: Path, data_template: Path, capsys: pytest.CaptureFixture[str]) -> None:
    settings = make_settings(fresh_data_dir(data_template, tmp_path / "data"), environment="production",
                             secret_key="p" * 48)
    app = create_app(settings)
    async with app.router.lifespan_context(app):
        assert "qinglian staff add <username> --role admin" in capsys.readouterr().out
        harness = ConsoleHarness(app, settings, "")
        async with harness.client() as client:
            response = await harness.submit_login(client, "demo-admin", "anything-at-all")
            assert response.status_code == 401
        await settle_background_tasks()


async def test_pages_need_a_login_and_carry_security_headers(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        assert location(await client.get("/console/cases")) == "/console/login?next=/console/cases"
        login_page = await client.get("/console/login")
        for page in (login_page,):
            assert page.headers["content-security-policy"].startswith("default-src 'self'")
            assert "unsafe-inline" not in page.headers["content-security-policy"]
            assert page.headers["x-frame-options"] == "DENY"
            assert page.headers["referrer-policy"] == "no-referrer"
            assert page.headers["cache-control"] == "no-store"
        response = await console.submit_login(client, "rev", PASSWORD)
        cookie = next(v for v in response.headers.get_list("set-cookie") if v.startswith("ql_staff="))
        # Lax, so the link in a staff-group notice opens the ticket; every POST still needs the CSRF token
        assert "HttpOnly" in cookie and "samesite=lax" in cookie.lower()
        page = await client.get("/console")
        assert page.status_code == 200
        assert page.headers["x-frame-options"] == "DENY" and page.headers["cache-control"] == "no-store"
        assert "<script" not in page.text


async def test_after_login_the_page_asked_for_opens(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    number = await console.case("clean_hall")
    async with console.client() as client:
        target = location(await client.get(f"/console/case/{number}"))
        assert target == f"/console/login?next=/console/case/{number}"
        form = await client.get(target)
        assert f'name="next" value="/console/case/{number}"' in form.text
        token = re.search(r'name="login_token" value="([^"]+)"', form.text).group(1)  # type: ignore[union-attr]
        listing = "/console/queue/clean_hall?status=routed"
        for next_path, expected in ((f"/console/case/{number}/accept", f"/console/case/{number}"),
                                    ("https://evil.example/", "/console"), ("//evil.example/", "/console"),
                                    (listing, listing)):
            response = await client.post("/console/login", data={"username": "rev", "password": PASSWORD,
                                                                  "login_token": token, "next": next_path})
            assert location(response) == expected
            client.cookies.set("ql_login", token, path="/console/login")


async def test_login_form_without_its_token_is_refused(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        response = await client.post("/console/login", data={"username": "rev", "password": PASSWORD})
        assert response.status_code == 403
        assert "ql_staff" not in response.cookies


async def test_failed_logins_lock_the_account(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    attempts = console.settings.city.console.login_attempts
    async with console.client() as client:
        for _ in range(attempts):
            assert (await console.submit_login(client, "rev", "wrong password!")).status_code == 401
        refused = await console.submit_login(client, "rev", PASSWORD)
        assert refused.status_code == 401 and "锁定" in refused.text
    assert len(await console.audit("login.failure")) == attempts
    assert len(await console.audit("login.locked")) == 1
    user = await console.staff("rev")
    assert user.locked_until is not None and user.locked_until > utcnow() + timedelta(minutes=10)
    async with console.runtime.sessionmaker.begin() as session:  # the lock runs out
        stored = await session.get(type(user), user.id)
        assert stored is not None
        stored.locked_until = utcnow() - timedelta(seconds=1)
    async with console.client() as client:
        await console.login(client, "rev")


async def test_failed_logins_from_one_address_are_throttled(console: ConsoleHarness,
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pages, "IP_FAILURE_LIMIT", 6)
    async with console.client() as client:
        for number in range(pages.IP_FAILURE_LIMIT):
            assert (await console.submit_login(client, f"nobody{number}", "wrong password!")).status_code == 401
        assert (await console.submit_login(client, "nobody", "wrong password!")).status_code == 429


async def test_totp_login(console: ConsoleHarness) -> None:
    secret = pyotp.random_base32()
    await console.user("sup", StaffRole.SUPERVISOR, totp_secret=secret)
    async with console.client() as client:
        response = await console.submit_login(client, "sup", PASSWORD)
        assert location(response).startswith("/console/login/2fa")
        assert location(await client.get("/console")).startswith("/console/login/2fa")  # half logged in
        page = await client.get("/console/login/2fa")
        assert secret not in page.text
        wrong = await client.post("/console/login/2fa", data={"csrf": csrf_of(page.text), "code": "000000"})
        assert wrong.status_code == 401
        no_csrf = await client.post("/console/login/2fa", data={"code": pyotp.TOTP(secret).now()})
        assert no_csrf.status_code == 403
        right = await client.post("/console/login/2fa", data={"csrf": csrf_of(page.text),
                                                               "code": pyotp.TOTP(secret).now()})
        assert location(right) == "/console"
        assert (await client.get("/console")).status_code == 200
    assert [e.action for e in await console.audit() if e.action.startswith("login.")] == [
        "login.password_ok", "login.failure", "login.success"]


async def test_wrong_codes_lock_the_account_too(console: ConsoleHarness) -> None:
    secret = pyotp.random_base32()
    await console.user("sup", StaffRole.SUPERVISOR, totp_secret=secret)
    async with console.client() as client:
        await console.submit_login(client, "sup", PASSWORD)
        page = await client.get("/console/login/2fa")
        for _ in range(console.settings.city.console.login_attempts):
            response = await client.post("/console/login/2fa", data={"csrf": csrf_of(page.text), "code": "000000"})
        assert response.status_code == 401 and "锁定" in response.text
        assert location(await client.get("/console")).startswith("/console/login?")
        # the password alone does not reset the count while the second factor is pending
        assert (await console.submit_login(client, "sup", PASSWORD)).status_code == 401


async def test_required_totp_is_enrolled_at_login(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"], totp_required=True)
    async with console.client() as client:
        location(await console.submit_login(client, "rev", PASSWORD))
        page = await client.get("/console/login/2fa")
        secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page.text)
        assert secret and "otpauth://totp/" in page.text
        response = await client.post("/console/login/2fa", data={
            "csrf": csrf_of(page.text), "enrol_secret": re.search(r'name="enrol_secret" value="([^"]+)"',
                                                                  page.text).group(1),  # type: ignore[union-attr]
            "code": pyotp.TOTP(secret.group(1)).now()})
        assert location(response) == "/console"
        assert (await client.get("/console")).status_code == 200
    assert (await console.staff("rev")).totp_secret == secret.group(1)
    assert len(await console.audit("staff.totp_enrol")) == 1


async def test_logout_needs_the_csrf_token_and_ends_the_session(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        assert (await client.post("/console/logout", data={"csrf": "forged"})).status_code == 403
        assert (await client.get("/console")).status_code == 200
        assert location(await client.post("/console/logout", data={"csrf": csrf})) == "/console/login"
        assert location(await client.get("/console")).startswith("/console/login")
    async with console.runtime.sessionmaker() as session:
        assert (await session.execute(select(StaffSession))).scalars().all() == []


# --- permissions ------------------------------------------------------------------------------


async def test_a_reviewer_sees_only_their_queues(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    mine = await console.case("clean_hall")
    other = await console.case(OTHER_QUEUE, label="formalism", attachments=[("x.jpg", "image/jpeg", JPEG)])
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        listing = (await client.get("/console/cases")).text
        assert mine in listing and other not in listing
        assert other not in (await client.get(f"/console/cases?queue={OTHER_QUEUE}")).text
        assert (await client.get(f"/console/queue/{OTHER_QUEUE}")).status_code == 404
        assert (await client.get(f"/console/case/{other}")).status_code == 404
        detail = await console.get_case(other)
        async with console.runtime.sessionmaker() as session:
            from storage import queries

            attachment_id = (await queries.case_by_number(session, other)).attachments[0].id  # type: ignore[union-attr]
        assert (await client.get(f"/console/case/{other}/evidence/{attachment_id}")).status_code == 404
        assert (await client.get(f"/console/case/{mine}/evidence/{attachment_id}")).status_code == 404
        for action, data in ACTIONS:
            response = await client.post(f"/console/case/{other}/{action}", data={"csrf": csrf, **data})
            # revealing identities is not a reviewer's right anywhere (config: supervisor, admin)
            assert response.status_code == (403 if action == "reveal" else 404), (action, response.text[:300])
        assert (await client.get("/console/overdue")).status_code == 200
        for admin_page in ("/console/staff", "/console/audit", "/console/models", "/console/stats"):
            assert (await client.get(admin_page)).status_code == 403, admin_page
    after = await console.get_case(other)
    assert (after.status, after.label, after.queue, after.assigned_to_id) == (
        detail.status, detail.label, detail.queue, detail.assigned_to_id)
    assert [e.kind for e in await console.trace(other)] == [TraceKind.RECEIVED, TraceKind.ROUTED]
    assert await console.audit(case_number=other) == []


async def test_a_supervisor_sees_every_queue_and_assigns_but_not_admin_pages(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.user("rev", StaffRole.REVIEWER, [OTHER_QUEUE])
    await console.user("outsider", StaffRole.REVIEWER, ["clean_hall"])
    other = await console.case(OTHER_QUEUE, label="formalism")
    async with console.client() as client:
        csrf = await console.login(client, "sup")
        assert other in (await client.get("/console/cases")).text
        page = await client.get(f"/console/case/{other}")
        assert page.status_code == 200
        assert '<option value="rev"' in page.text and '<option value="outsider"' not in page.text
        assigned = await client.post(f"/console/case/{other}/assign", data={"csrf": csrf, "username": "rev"})
        assert location(assigned).startswith(f"/console/case/{other}")
        assert (await console.get_case(other)).assigned_to_id == (await console.staff("rev")).id
        assert [e.detail for e in await console.audit("case.assign")] == [{"to": "rev"}]
        assert (await client.get("/console/stats")).status_code == 200
        for admin_page in ("/console/staff", "/console/audit", "/console/models"):
            assert (await client.get(admin_page)).status_code == 403, admin_page


# --- actions ----------------------------------------------------------------------------------

ACTIONS: list[tuple[str, dict[str, str]]] = [
    ("accept", {}),
    ("confirm-label", {}),
    ("correct-label", {"label": "medical"}),
    ("move", {"queue": "petitions", "reason": "不属于本组"}),
    ("status", {"status": "in_handling", "note": "已转交"}),
    ("duplicate", {"original": "QL-2026-000001"}),
    ("note", {"body": "内部备注"}),
    ("assign", {"username": "rev"}),
    ("answer", {"text": "已核实"}),
    ("reveal", {}),
]


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
        answered = await act("answer", text="经核实，相关人员已被批评教育。")
        assert location(answered).endswith("#trace")
        trace = await console.trace(number)
        assert (trace[-1].kind, trace[-1].body) == (TraceKind.ANSWERED, "经核实，相关人员已被批评教育。")

        corrected = await act("correct-label", label="medical")  # routes to clean_medical, still theirs
        assert location(corrected).startswith(f"/console/case/{number}")
        case = await console.get_case(number)
        assert (case.label, case.label_status, case.predicted_label, case.queue) == (
            "medical", "corrected", "slow_service", "clean_medical")
        assert (await console.trace(number))[-1].detail["queue"] == "clean_medical"

        await act("duplicate", original=original)
        assert (await console.get_case(number)).status == "duplicate"
        assert (await console.trace(number))[-1].body == original

        moved = await act("move", queue="petitions", reason="涉及收受红包")
        assert location(moved) == "/console?done=moved_away"  # the reviewer does not work in petitions
        assert (await console.get_case(number)).queue == "petitions"

    audit = [(entry.action, entry.detail) for entry in await console.audit(case_number=number)
             if entry.action != "case.view"]
    assert [action for action, _ in audit] == [
        "case.accept", "case.confirm_label", "case.assign", "case.note", "case.status", "case.answer",
        "case.correct_label", "case.move", "case.duplicate", "case.move"]
    assert dict(audit)["case.assign"] == {"to": "rev"}
    assert audit[-1][1]["reason"] == "涉及收受红包"
    assert [e.kind for e in await console.trace(number)] == [
        TraceKind.RECEIVED, TraceKind.ROUTED, TraceKind.ACCEPTED, TraceKind.IN_HANDLING, TraceKind.ANSWERED,
        TraceKind.ROUTED, TraceKind.DUPLICATE, TraceKind.ROUTED]
    async with console.runtime.sessionmaker() as session:
        notes = (await session.execute(select(InternalNote))).scalars().all()
        assert [note.body for note in notes] == ["电话联系了窗口负责人"]
        answers = [m.payload for m in (await session.execute(select(OutboxMessage))).scalars()
                   if m.payload.get("notice") == "answer"]
        assert answers == [{"notice": "answer", "locale": "zh", "case_number": number,
                            "answer": "经核实，相关人员已被批评教育。"}]


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
    assert (await console.get_case(number)).queue == "clean_hall"


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
        revealed = await client.post(f"/console/case/{number}/reveal", data={"csrf": csrf})
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
        assert f'<img src="/console/case/{number}/evidence/{image_id}"' in page
        image = await client.get(f"/console/case/{number}/evidence/{image_id}")
        assert (image.status_code, image.headers["content-type"], image.content) == (200, "image/jpeg", JPEG)
        assert image.headers["content-disposition"].startswith("inline")
        for attachment_id in (pdf_id, html_id):
            download = await client.get(f"/console/case/{number}/evidence/{attachment_id}")
            assert download.headers["content-type"] == "application/octet-stream"
            assert download.headers["content-disposition"].startswith("attachment")
            assert "sandbox" in download.headers["content-security-policy"]
    assert len(await console.audit("case.download", number)) == 3


# --- CSRF and XSS -----------------------------------------------------------------------------


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
    async with console.runtime.sessionmaker() as session:
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
        await client.post(f"/console/case/{number}/answer", data={"csrf": csrf, "text": "<script>alert(3)</script>"})
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


def test_highlight_escapes_every_piece() -> None:
    assert str(pages.highlight("a<b>&c 窗口", ["窗口", "<b>", ""])) == "a<mark>&lt;b&gt;</mark>&amp;c <mark>窗口</mark>"
    assert str(pages.highlight("<x>", None)) == "&lt;x&gt;"


# --- lists ------------------------------------------------------------------------------------


async def test_lists_filter_and_page(console: ConsoleHarness, monkeypatch: pytest.MonkeyPatch) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    low = await console.case("triage", label="other", confidence=0.31, description="不知道该找谁反映的问题情况")
    late = await console.case("clean_hall", overdue=True)
    medical = await console.case("clean_medical", label="medical", district="yuelu",
                                 description="医院收红包的问题，医生收受红包")
    monkeypatch.setattr(pages, "PER_PAGE", 2)
    async with console.client() as client:
        await console.login(client, "sup")

        async def numbers(url: str) -> list[str]:
            response = await client.get(url)
            assert response.status_code == 200, response.text[:300]
            return re.findall(r'<a href="/console/case/(QL-[0-9-]+)">', response.text)

        assert await numbers("/console/cases") == [medical, late]
        assert await numbers("/console/cases?page=2") == [low]
        assert await numbers("/console/cases?label=medical") == [medical]
        assert await numbers("/console/cases?district=yuelu") == [medical]
        assert await numbers("/console/cases?conf_max=0.5") == [low]
        assert await numbers("/console/cases?conf_min=0.5&conf_max=1") == [medical, late]
        assert await numbers("/console/cases?q=红包") == [medical]
        assert await numbers("/console/cases?overdue=1") == [late]
        assert await numbers("/console/overdue") == [late]
        assert await numbers("/console/labelling") == [low]
        assert await numbers("/console/queue/clean_medical") == [medical]
        assert await numbers("/console/cases?status=accepted") == []
        assert await numbers("/console/cases?from=2000-01-01&to=2000-01-02") == []
        overview = (await client.get("/console")).text
        assert 'href="/console/queue/clean_medical?status=routed">1<' in overview
        assert (await client.get("/console/cases?conf_min=abc")).status_code == 422
        assert (await client.get("/console/cases?from=yesterday")).status_code == 422


# --- administration and the user's account ----------------------------------------------------


async def test_admin_manages_staff_through_the_pages(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        created = await client.post("/console/staff", data={
            "csrf": csrf, "username": "li.si", "display_name": "李四", "role": "reviewer",
            "queues": ["clean_hall", "petitions"]})
        assert created.status_code == 200
        password = re.search(r'<code class="secret">([^<]+)</code>', created.text)
        assert password
        user = await console.staff("li.si")
        assert (user.role, sorted(q.queue for q in user.queues)) == ("reviewer", ["clean_hall", "petitions"])

        await client.post("/console/staff/li.si/role", data={"csrf": csrf, "role": "supervisor",
                                                             "queues": ["clean_hall"]})
        assert (await console.staff("li.si")).role == "supervisor"
        await client.post("/console/staff/li.si/totp-required", data={"csrf": csrf, "required": "1"})
        assert (await console.staff("li.si")).totp_required
        token_page = await client.post("/console/staff/li.si/tokens", data={"csrf": csrf, "name": "ticket system"})
        assert re.search(r'<code class="secret">qlt_', token_page.text)
        async with console.runtime.sessionmaker() as session:
            token = (await session.execute(select(ApiToken))).scalar_one()
        await client.post(f"/console/staff/li.si/tokens/{token.id}/revoke", data={"csrf": csrf})
        reset = await client.post("/console/staff/li.si/password", data={"csrf": csrf})
        new_password = re.search(r'<code class="secret">([^<]+)</code>', reset.text)
        assert new_password and new_password.group(1) != password.group(1)
        await client.post("/console/staff/li.si/active", data={"csrf": csrf, "active": "0"})
        assert not (await console.staff("li.si")).active
        refused = await client.post("/console/staff/boss/active", data={"csrf": csrf, "active": "0"})
        assert refused.status_code == 409
        assert (await client.get("/console/staff/nobody")).status_code == 404
        duplicate = await client.post("/console/staff", data={"csrf": csrf, "username": "li.si", "role": "reviewer"})
        assert duplicate.status_code == 409
    async with console.runtime.sessionmaker() as session:
        assert (await session.execute(select(ApiToken))).scalar_one().revoked
    boss = await console.staff("boss")
    actions = [entry.action for entry in await console.audit()
               if entry.actor_id == boss.id and entry.action.startswith(("staff.", "api_token."))]
    assert actions == ["staff.create", "staff.assign_queues", "staff.role", "staff.assign_queues",
                       "staff.totp_required", "api_token.create", "api_token.revoke", "staff.reset_password",
                       "staff.disable"]


async def test_audit_log_page_filters_by_user_and_case(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    first = await console.case("clean_hall")
    second = await console.case("clean_hall")
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        await client.post(f"/console/case/{first}/accept", data={"csrf": csrf})
        await client.post(f"/console/case/{second}/note", data={"csrf": csrf, "body": "备注"})
    async with console.client() as client:
        await console.login(client, "boss")
        by_case = (await client.get(f"/console/audit?case={first}")).text
        assert "case.accept" in by_case and "case.note" not in by_case
        by_user = (await client.get("/console/audit?user=rev")).text
        assert "case.accept" in by_user and "case.note" in by_user and "login.success" in by_user
        assert "boss" not in by_user.split("<table", 1)[1]


async def test_own_account_password_totp_and_tokens(console: ConsoleHarness) -> None:
    await console.user("rev", StaffRole.REVIEWER, ["clean_hall"])
    async with console.client() as client:
        csrf = await console.login(client, "rev")
        wrong = await client.post("/console/account/password", data={"csrf": csrf, "current": "nope",
                                                                     "new": "x" * 12, "repeat": "x" * 12})
        assert wrong.status_code == 422
        changed = await client.post("/console/account/password", data={
            "csrf": csrf, "current": PASSWORD, "new": "a new password 2026", "repeat": "a new password 2026"})
        assert location(changed) == "/console/account?done=password"
        page = await client.get("/console/account?enrol=1")
        assert page.status_code == 200  # still logged in with a fresh session
        csrf = csrf_of(page.text)
        secret = re.search(r'<code class="secret">([A-Z2-7]+)</code>', page.text).group(1)  # type: ignore[union-attr]
        signed = re.search(r'name="secret" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        assert (await client.post("/console/account/totp", data={"csrf": csrf, "secret": signed,
                                                                 "code": "000000"})).status_code == 422
        enrolled = await client.post("/console/account/totp", data={"csrf": csrf, "secret": signed,
                                                                    "code": pyotp.TOTP(secret).now()})
        assert location(enrolled) == "/console/account?done=totp_on"
        created = await client.post("/console/account/tokens", data={"csrf": csrf, "name": "my script"})
        token = re.search(r'<code class="secret">(qlt_[^<]+)</code>', created.text)
        assert token
        api = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token.group(1)}"})
        assert api.status_code == 200
        token_id = re.search(r'/console/account/tokens/(\d+)/revoke', created.text).group(1)  # type: ignore[union-attr]
        await client.post(f"/console/account/tokens/{token_id}/revoke", data={"csrf": csrf})
        api = await client.get("/api/v1/me", headers={"Authorization": f"Bearer {token.group(1)}"})
        assert api.status_code == 401
    async with console.client() as client:
        response = await console.submit_login(client, "rev", "a new password 2026")
        assert location(response).startswith("/console/login/2fa")
    assert (await console.staff("rev")).totp_secret == secret


async def test_statistics_page_and_csv(console: ConsoleHarness) -> None:
    await console.user("sup", StaffRole.SUPERVISOR)
    await console.case("clean_hall")
    await console.case("clean_medical", label="medical")
    async with console.client() as client:
        await console.login(client, "sup")
        page = await client.get("/console/stats")
        assert page.status_code == 200 and "<svg" in page.text and "医疗医保" in page.text
        today = utcnow().date()
        csv = await client.get(f"/console/stats.csv?start={today - timedelta(days=3)}&end={today + timedelta(days=1)}")
        assert csv.status_code == 200 and csv.headers["content-type"].startswith("text/csv")
        assert "label,medical" in csv.text
        assert (await client.get("/console/stats?start=2026-02-01&end=2026-01-01")).status_code == 422


async def test_models_page_for_admins(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        page = await client.get("/console/models")
        assert page.status_code == 200 and "立即训练新版本" in page.text
        refused = await client.post("/console/models/promote", data={"csrf": csrf, "version": "nope"})
        assert refused.status_code == 409
        assert (await client.post("/console/models/rollback", data={"csrf": csrf})).status_code == 409
