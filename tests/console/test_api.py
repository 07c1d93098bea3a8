"""The REST API under /api/v1: permissions, every action with its trace and audit, paging and filters,
reasons for bad input, CSRF, the reporter's identity kept out of case responses, and an answer reaching
a Telegram reporter through the stand-in Bot API server."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from sqlalchemy import select

from bot.config import Settings, load_settings
from console.app import mount_console
from console.auth import SESSION_COOKIE, cookie_serializer
from console.context import CONTEXT_STATE, ConsoleContext
from handlers.notices import render
from handlers.texts import Texts
from storage import loop, staff_actions
from storage.migrate import upgrade
from storage.models import Attachment, Case, OutboxMessage, StaffRole, utcnow
from tests.conftest import REPO, LiveService, make_test_keyring, staff_password_hashing
from tests.console.conftest import make_context
from tests.factories import create_staff, file_case, plain_photo
from tests.standins.telegram_server import TelegramStandIn

PASSWORD = "correct horse battery"
_PASSWORD_HASH = staff_password_hashing().hash(PASSWORD)  # Argon2 is slow on purpose: hash once for every test account
REPORTER_NAME = "欧阳明月"
REPORTER_PHONE = "13987654321"
REPORTER_REF = "88112233"
DESCRIPTION = "政务服务中心窗口工作人员上班时间玩手机，群众排队两小时。"
JPEG = plain_photo()


# --- an in-process service ----------------------------------------------------------------------


def build_app(settings: Settings) -> FastAPI:
    """The service's own app (the console is mounted in it); its lifespan is not run, so no workers start."""
    from bot.app import create_app

    return create_app(settings)


@dataclass
class Staff:
    username: str
    token: str
    user_id: int

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


class Service:
    """The app with the context it mounted the console with, a client, and factories for staff and cases."""

    def __init__(self, app: FastAPI, client: httpx.AsyncClient) -> None:
        self.app = app
        self.client = client
        self.context: ConsoleContext = getattr(app.state, CONTEXT_STATE)
        self.database = self.context.database

    async def staff(self, username: str, role: StaffRole = StaffRole.REVIEWER, queues: tuple[str, ...] = ()) -> Staff:
        async with self.database.sessionmaker.begin() as session:
            user = await staff_actions.create_staff(session, username=username, display_name=f"{username} 同志",
                                                    role=role, password_hash=_PASSWORD_HASH)
            await staff_actions.set_queues(session, user, list(queues))
            token, _ = await staff_actions.create_api_token(session, user, "tests", actor=user)
        return Staff(username, token, user.id)

    async def case(self, *, queue: str = "clean_hall", label: str | None = "slow_service", confidence: float = 0.9,
                   district: str | None = "yuelu", description: str = DESCRIPTION,
                   anonymous: bool = True, evidence: bytes | None = None, created_days_ago: int = 0) -> str:
        context = self.context
        async with self.database.sessionmaker.begin() as session:
            attachment_ids = []
            if evidence is not None:
                context.evidence_dir.mkdir(parents=True, exist_ok=True)
                stored_name = f"evidence-{utcnow().timestamp()}.jpg"
                (context.evidence_dir / stored_name).write_bytes(evidence)
                attachment = Attachment(stored_name=stored_name, original_name="photo.jpg", media_type="image/jpeg",
                                        size_bytes=len(evidence), sha256="0" * 64)
                session.add(attachment)
                await session.flush()
                attachment_ids.append(attachment.id)
            case, _ = await file_case(
                session, secret_key=context.secret_key, case_number_prefix="QL", year=2026,
                channel="telegram", reporter_ref=REPORTER_REF, locale="zh", district=district,
                place="岳麓区政务服务中心3号窗口", occurred="今天", description=description, anonymous=anonymous,
                reporter_name=None if anonymous else REPORTER_NAME,
                reporter_phone=None if anonymous else REPORTER_PHONE,
                attachment_ids=attachment_ids, queue=queue, label=label, confidence=confidence,
                terms=["玩手机", "排队"] if label else None, model_version="test-1",
                accept_due_at=utcnow() + timedelta(days=15), resolve_due_at=utcnow() + timedelta(days=60))
            if created_days_ago:
                case.created_at = utcnow() - timedelta(days=created_days_ago)
        assert case.case_number is not None
        return case.case_number

    async def login(self, staff: Staff) -> tuple[dict[str, str], str]:
        """A console session for `staff`: (its cookie, its CSRF token)."""
        async with self.database.sessionmaker.begin() as session:
            user = await staff_actions.get_staff(session, staff.user_id)
            assert user is not None
            token, record = await staff_actions.start_session(session, user, hours=1, ip=None, second_factor_done=True)
        return {SESSION_COOKIE: cookie_serializer(self.context).dumps(token)}, record.csrf_token

    async def audit_actions(self, case_number: str) -> list[str]:
        admin = await self.admin()
        response = await self.client.get("/api/v1/audit", params={"case": case_number, "per_page": 200},
                                         headers=admin.headers)
        assert response.status_code == 200, response.text
        return [entry["action"] for entry in reversed(response.json()["items"])]

    _admin: Staff | None = None

    async def admin(self) -> Staff:
        if self._admin is None:
            self._admin = await self.staff("root", StaffRole.ADMIN)
        return self._admin


@pytest.fixture
async def service(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> AsyncIterator[Service]:
    for variable in ("QINGLIAN_TELEGRAM_TOKEN", "QINGLIAN_DATABASE_URL", "QINGLIAN_CONFIG_FILE"):
        monkeypatch.delenv(variable, raising=False)
    settings = load_settings(data_dir=tmp_path, secret_key="s" * 40)
    await asyncio.to_thread(upgrade, settings.resolved_database_url, make_test_keyring())
    app = build_app(settings)
    transport = httpx.ASGITransport(app=app, client=("203.0.113.7", 50000))
    async with httpx.AsyncClient(transport=transport, base_url="http://console.test") as client:
        yield Service(app, client)
    await app.state.runtime.close()


# --- permissions ----------------------------------------------------------------------------------


def _every_case_call(number: str, attachment_id: int = 1) -> list[tuple[str, str, dict[str, Any] | None]]:
    base = f"/api/v1/cases/{number}"
    return [
        ("GET", base, None),
        ("POST", f"{base}/accept", None),
        ("POST", f"{base}/label", {"action": "confirm"}),
        ("POST", f"{base}/label", {"action": "correct", "label": "medical"}),
        ("POST", f"{base}/move", {"queue": "clean_hall", "reason": "belongs to us"}),
        ("POST", f"{base}/status", {"status": "in_handling"}),
        ("POST", f"{base}/duplicate", {"of": number}),
        ("POST", f"{base}/notes", {"body": "a note"}),
        ("GET", f"{base}/notes", None),
        ("POST", f"{base}/assign", {"username": None}),
        ("POST", f"{base}/answer", {"text": "an answer"}),
        ("POST", f"{base}/more-info", {"question": "which window?"}),
        ("GET", f"{base}/evidence/{attachment_id}", None),
    ]


async def test_a_reviewer_gets_404_for_every_verb_on_another_queues_case(service: Service) -> None:
    reviewer = await service.staff("li", queues=("clean_hall",))
    other = await service.case(queue="work_style", label="formalism", evidence=JPEG)
    own = await service.case(queue="clean_hall")
    for method, path, body in [*_every_case_call(other), *_every_case_call("QL-2026-999999")]:
        response = await service.client.request(method, path, json=body, headers=reviewer.headers)
        assert (response.status_code, method, path) == (404, method, path)
        assert "in your queues" in response.json()["detail"] or "no such" in response.json()["detail"]
    # the reviewer's role may not reveal identities at all: 403, the same for any case number
    for number in (other, own, "QL-2026-999999"):
        response = await service.client.post(f"/api/v1/cases/{number}/reveal-identity", headers=reviewer.headers)
        assert response.status_code == 403
    listed = await service.client.get("/api/v1/cases", headers=reviewer.headers)
    asked_for_other = await service.client.get("/api/v1/cases", params={"queue": "work_style"},
                                               headers=reviewer.headers)
    assert [c["case_number"] for c in listed.json()["items"]] == [own]
    assert asked_for_other.json()["items"] == []
    queues = await service.client.get("/api/v1/queues", headers=reviewer.headers)
    assert [(q["code"], q["new"]) for q in queues.json()] == [("clean_hall", 1)]
    assert service.context.evidence_dir.exists()
    supervisor = await service.staff("wang", StaffRole.SUPERVISOR)
    assert (await service.client.get(f"/api/v1/cases/{other}", headers=supervisor.headers)).status_code == 200


async def test_a_reviewer_asks_the_reporter_of_a_case_in_their_queues_for_more_information(
        service: Service) -> None:
    reviewer = await service.staff("li", queues=("clean_hall",))
    own = await service.case(queue="clean_hall")
    other = await service.case(queue="work_style", label="formalism")
    for empty in ("", "   "):
        response = await service.client.post(f"/api/v1/cases/{own}/more-info", json={"question": empty},
                                             headers=reviewer.headers)
        assert response.status_code == 422
    refused = await service.client.post(f"/api/v1/cases/{other}/more-info", json={"question": "哪个窗口？"},
                                        headers=reviewer.headers)
    assert refused.status_code == 404
    asked = await service.client.post(f"/api/v1/cases/{own}/more-info", json={"question": "请提供窗口编号。"},
                                      headers=reviewer.headers)
    assert asked.status_code == 200, asked.text
    detail = asked.json()
    assert (detail["trace"][-1]["kind"], detail["trace"][-1]["body"]) == ("more_info", "请提供窗口编号。")
    assert [(d["kind"], d["status"]) for d in detail["deliveries"]] == [("more_info", "pending")]
    assert await service.audit_actions(own) == ["case.more_info_asked"]
    assert await service.audit_actions(other) == []
    paths = (await service.client.get("/api/openapi.json")).json()["paths"]
    schema = paths["/api/v1/cases/{case_number}/more-info"]["post"]
    assert schema["summary"] == "Ask the reporter for more information" and "422" in schema["responses"]


async def test_a_reviewer_gets_403_on_admin_endpoints(service: Service) -> None:
    reviewer = await service.staff("li", queues=("clean_hall",))
    supervisor = await service.staff("wang", StaffRole.SUPERVISOR)
    calls = [("GET", "/api/v1/audit", None), ("GET", "/api/v1/staff", None),
             ("POST", "/api/v1/staff", {"username": "new", "password": PASSWORD}),
             ("PATCH", "/api/v1/staff/li", {"role": "admin"})]
    for who in (reviewer, supervisor):
        for method, path, body in calls:
            response = await service.client.request(method, path, json=body, headers=who.headers)
            assert (response.status_code, response.json()) == (403, {"detail": "only administrators may do this"})


async def test_no_or_a_wrong_token_is_401_and_a_disabled_users_token_stops_working(service: Service) -> None:
    reviewer = await service.staff("li", queues=("clean_hall",))
    admin = await service.admin()
    assert (await service.client.get("/api/v1/cases")).status_code == 401
    wrong = await service.client.get("/api/v1/me", headers={"Authorization": "Bearer qlt_not-a-token"})
    assert (wrong.status_code, wrong.headers["www-authenticate"]) == (401, "Bearer")
    me = await service.client.get("/api/v1/me", headers=reviewer.headers)
    assert me.json() == {"username": "li", "display_name": "li 同志", "role": "reviewer", "queues": ["clean_hall"],
                         "can_reveal_identity": False, "totp_enabled": False, "authenticated_by": "token"}
    disabled = await service.client.patch("/api/v1/staff/li", json={"active": False}, headers=admin.headers)
    assert disabled.status_code == 200 and disabled.json()["active"] is False
    after = await service.client.get("/api/v1/me", headers=reviewer.headers)
    assert (after.status_code, after.json()["detail"]) == (401, "invalid or revoked API token")
    # enabling the account again does not bring its revoked tokens back
    await service.client.patch("/api/v1/staff/li", json={"active": True}, headers=admin.headers)
    assert (await service.client.get("/api/v1/me", headers=reviewer.headers)).status_code == 401


# --- actions, each with its trace event and audit record -------------------------------------------


async def test_reading_a_cases_internal_notes_is_audited_as_a_view(service: Service) -> None:
    """Seen as an auditor: GET /cases/{n} is recorded as a view, but GET /cases/{n}/notes read the same case's
    internal notes (what colleagues wrote about the reporter and the people named) without any entry."""
    reviewer = await service.staff("sun", queues=("clean_hall",))
    number = await service.case(queue="clean_hall")
    url = f"/api/v1/cases/{number}"
    await service.client.post(f"{url}/notes", json={"body": "举报人是该窗口的前同事"}, headers=reviewer.headers)
    before = await service.audit_actions(number)
    notes = await service.client.get(f"{url}/notes", headers=reviewer.headers)
    assert [note["body"] for note in notes.json()] == ["举报人是该窗口的前同事"]
    assert await service.audit_actions(number) == [*before, "case.view"]
    admin = await service.admin()
    entry = (await service.client.get("/api/v1/audit", params={"case": number, "per_page": 1},
                                      headers=admin.headers)).json()["items"][0]
    assert (entry["action"], entry["actor"], entry["ip"]) == ("case.view", "sun", "203.0.113.7")


async def test_the_audit_log_says_which_api_token_acted(service: Service) -> None:
    """Seen as an auditor: an identity revealed through an API token read in the audit log exactly like one revealed
    by its owner in the console; a leaked integration token could not be told from the person."""
    supervisor = await service.staff("qian", StaffRole.SUPERVISOR)
    async with service.database.read_sessionmaker() as session:
        [token] = await staff_actions.list_api_tokens(session, supervisor.user_id)
    number = await service.case(queue="clean_hall", anonymous=False)
    url = f"/api/v1/cases/{number}"
    assert (await service.client.get(url, headers=supervisor.headers)).status_code == 200
    revealed = await service.client.post(f"{url}/reveal-identity", json={"reason": "核实举报线索"},
                                         headers=supervisor.headers)
    assert revealed.status_code == 200, revealed.text
    admin = await service.admin()
    items = (await service.client.get("/api/v1/audit", params={"case": number}, headers=admin.headers)).json()["items"]
    assert [(item["action"], item["actor"], item["detail"].get("api_token")) for item in reversed(items)] == [
        ("case.view", "qian", f"tests (#{token.id})"), ("case.reveal_identity", "qian", f"tests (#{token.id})")]


async def test_every_action_writes_its_trace_and_audit(service: Service) -> None:
    supervisor = await service.staff("wang", StaffRole.SUPERVISOR)
    colleague = await service.staff("zhao", queues=("work_style",))
    number = await service.case(queue="clean_hall", evidence=JPEG)
    original = await service.case(queue="clean_hall")
    client, headers = service.client, supervisor.headers
    url = f"/api/v1/cases/{number}"

    viewed = await client.get(url, headers=headers)
    assert viewed.status_code == 200
    detail = viewed.json()
    assert (detail["status"], detail["label"], detail["label_status"]) == ("routed", "slow_service", None)
    assert detail["label_top"] == [{"label": "slow_service", "score": 0.9}, {"label": "other", "score": 0.1}]
    assert detail["label_terms"] == ["玩手机", "排队"] and detail["model_version"] == "test-1"
    assert [e["kind"] for e in detail["trace"]] == ["received", "routed"]

    accepted = await client.post(f"{url}/accept", headers=headers)
    assert (accepted.status_code, accepted.json()["status"]) == (200, "accepted")
    assert accepted.json()["accepted_at"] is not None
    again = await client.post(f"{url}/accept", headers=headers)
    assert (again.status_code, again.json()) == (409, {"detail": f"case {number} was accepted already"})

    confirmed = await client.post(f"{url}/label", json={"action": "confirm", "label": "slow_service"}, headers=headers)
    assert confirmed.json()["label_status"] == "confirmed"
    stale = await client.post(f"{url}/label", json={"action": "confirm", "label": "medical"}, headers=headers)
    assert stale.status_code == 409 and "correct it instead" in stale.json()["detail"]

    corrected = await client.post(f"{url}/label", json={"action": "correct", "label": "formalism"}, headers=headers)
    body = corrected.json()
    assert (body["label"], body["label_status"], body["queue"], body["predicted_label"]) == (
        "formalism", "corrected", "work_style", "slow_service")
    assert [event["kind"] for event in body["trace"][-2:]] == ["routed", "transferred"]  # the reporter reads the latter
    assert body["trace"][-2]["detail"] == {"queue": "work_style", "reason": "moved", "from": "clean_hall"}

    moved = await client.post(f"{url}/move", json={"queue": "clean_hall", "reason": "窗口服务问题"}, headers=headers)
    assert (moved.json()["queue"], moved.json()["trace"][-1]["detail"]["from"]) == ("clean_hall", "work_style")
    moved_back = await client.post(f"{url}/move", json={"queue": "work_style", "reason": "作风问题"}, headers=headers)
    assert moved_back.json()["queue"] == "work_style"

    status = await client.post(f"{url}/status", json={"status": "in_handling", "note": "已转交核查"}, headers=headers)
    assert status.json()["status"] == "in_handling"
    assert (status.json()["trace"][-1]["kind"], status.json()["trace"][-1]["body"]) == ("in_handling", "已转交核查")

    noted = await client.post(f"{url}/notes", json={"body": "  内部：先核实窗口排班  "}, headers=headers)
    assert noted.status_code == 201
    assert [(n["body"], n["author"]) for n in noted.json()["notes"]] == [("内部：先核实窗口排班", "wang 同志")]
    assert "内部" not in json.dumps(noted.json()["trace"], ensure_ascii=False)
    notes = await client.get(f"{url}/notes", headers=headers)
    assert [n["body"] for n in notes.json()] == ["内部：先核实窗口排班"]

    assigned = await client.post(f"{url}/assign", json={"username": "zhao"}, headers=headers)
    assert assigned.json()["assignee"] == "zhao"
    mine = await client.get("/api/v1/cases", params={"assigned_to_me": True}, headers=colleague.headers)
    assert [c["case_number"] for c in mine.json()["items"]] == [number]
    unassigned = await client.post(f"{url}/assign", json={"username": None}, headers=headers)
    assert unassigned.json()["assignee"] is None

    answered = await client.post(f"{url}/answer", json={"text": "经核查，已对该工作人员批评教育。"}, headers=headers)
    assert answered.json()["status"] == "answered"
    assert (answered.json()["trace"][-1]["kind"], answered.json()["trace"][-1]["body"]) == (
        "answered", "经核查，已对该工作人员批评教育。")
    async with service.database.read_sessionmaker() as session:
        payloads = [m.payload for m in (await session.execute(
            select(OutboxMessage).where(OutboxMessage.recipient == REPORTER_REF))).scalars()]
    assert {"notice": "answer", "locale": "zh", "case_number": number,
            "answer": "经核查，已对该工作人员批评教育。"} in payloads

    evidence_id = detail["evidence"][0]["id"]
    download = await client.get(f"{url}/evidence/{evidence_id}", headers=headers)
    assert download.content == JPEG
    assert download.headers["content-type"] == "image/jpeg"
    assert download.headers["content-disposition"].startswith("attachment")
    assert download.headers["x-content-type-options"] == "nosniff"
    assert detail["evidence"][0]["download_url"] == f"{url}/evidence/{evidence_id}"

    duplicate = await client.post(f"{url}/duplicate", json={"of": original}, headers=headers)
    assert (duplicate.json()["status"], duplicate.json()["duplicate_of"]) == ("duplicate", original)
    closed = await client.post(f"{url}/accept", headers=headers)
    assert closed.status_code == 409

    trace = (await client.get(url, headers=headers)).json()["trace"]
    assert [e["kind"] for e in trace] == ["received", "routed", "accepted", "routed", "transferred", "routed",
                                          "routed", "in_handling", "answered", "duplicate"]
    assert {e["actor"] for e in trace[2:]} == {"staff"}
    assert await service.audit_actions(number) == [
        "case.view", "case.accept", "case.confirm_label", "case.correct_label", "case.move", "case.move",
        "case.move", "case.status", "case.note", "case.view", "case.assign", "case.assign", "case.answer",
        "case.download", "case.duplicate", "case.view"]
    admin = await service.admin()
    entries = (await client.get("/api/v1/audit", params={"actor": "wang", "case": number, "per_page": 1},
                                headers=admin.headers)).json()
    assert (entries["total"], entries["pages"], entries["items"][0]["actor"]) == (16, 16, "wang")
    assert entries["items"][0]["ip"] == "203.0.113.7"


async def test_the_closed_loops_routes_extension_appeal_rejection_and_a_note_for_the_reporter(
        service: Service) -> None:
    reviewer = await service.staff("li", queues=("clean_hall",))
    supervisor = await service.staff("wang", StaffRole.SUPERVISOR)
    number = await service.case(queue="clean_hall")
    client, url = service.client, f"/api/v1/cases/{number}"
    due = (await client.get(url, headers=reviewer.headers)).json()["resolve_due_at"]
    until = (datetime.fromisoformat(due) + timedelta(days=20)).date().isoformat()

    blank = await client.post(f"{url}/extension", json={"until": until, "reason": "  "}, headers=reviewer.headers)
    assert blank.status_code == 422
    never_due = await client.post(f"{url}/extension", json={"until": "9999-12-31", "reason": "需调取监控"},
                                  headers=reviewer.headers)
    assert never_due.status_code == 422 and "at most 30 days" in never_due.json()["detail"]
    for reason, decision in (("需调取三个月的监控录像", {"approve": False, "note": "先完成初步核查"}),
                             ("监控录像需公安协助调取", {"approve": True})):
        requested = await client.post(f"{url}/extension", json={"until": until, "reason": reason},
                                      headers=reviewer.headers)
        assert requested.status_code == 200, requested.text
        request = requested.json()["extensions"][-1]
        assert (request["reason"], request["status"]) == (reason, "pending")
        decide = f"{url}/extension/{request['id']}"
        refused = await client.post(decide, json={"approve": True}, headers=reviewer.headers)
        assert (refused.status_code, refused.json()) == (403, {"detail": "only supervisors and administrators may "
                                                                         "do this"})
        decided = await client.post(decide, json=decision, headers=supervisor.headers)
        assert decided.status_code == 200, decided.text
    detail = decided.json()
    assert [r["status"] for r in detail["extensions"]] == ["refused", "approved"]
    assert detail["resolve_due_at"][:10] == until  # the end of that day in the city's time, which is UTC+8
    refusal = next(e for e in detail["trace"] if e["kind"] == "extension_refused")
    assert (refusal["actor"], refusal["body"]) == ("staff", "先完成初步核查")
    assert [d["kind"] for d in detail["deliveries"]] == ["extended"]  # the reporter hears of the approval only

    noted = await client.post(f"{url}/tell-reporter", json={"text": "已转相关科室核查。"}, headers=reviewer.headers)
    assert (noted.status_code, noted.json()["trace"][-1]["kind"], noted.json()["trace"][-1]["body"]) == (
        200, "note", "已转相关科室核查。")
    assert noted.json()["deliveries"][-1]["kind"] == "note"
    unreferred = await client.post(f"{url}/status", json={"status": "rejected", "note": "属于民事纠纷"},
                                   headers=reviewer.headers)
    assert unreferred.status_code == 422 and "where the reporter can turn" in unreferred.json()["detail"]
    rejected = await client.post(f"{url}/status", json={"status": "rejected", "note": "属于民事纠纷",
                                                        "referral": "请拨打12345市民热线"}, headers=reviewer.headers)
    assert (rejected.json()["status"], rejected.json()["trace"][-1]["body"]) == (
        "rejected", "属于民事纠纷\n请拨打12345市民热线")

    async with service.database.sessionmaker.begin() as session:  # the reporter appeals in the chat
        case = (await session.execute(select(Case).where(Case.case_number == number))).scalar_one()
        await loop.appeal(session, case, "这不是民事纠纷。", appeal_limit=1)
    assert (await client.get(url, headers=reviewer.headers)).json()["appeal_pending"] is True
    forbidden = await client.post(f"{url}/appeal-decision", json={"uphold": True, "reason": "维持"},
                                  headers=reviewer.headers)
    assert forbidden.status_code == 403
    upheld = await client.post(f"{url}/appeal-decision", json={"uphold": True, "reason": "经复核，维持不予受理。"},
                               headers=supervisor.headers)
    assert upheld.status_code == 200, upheld.text
    body = upheld.json()
    assert (body["status"], body["appeal_pending"]) == ("rejected", False)
    assert (body["trace"][-1]["kind"], body["trace"][-1]["body"]) == ("appeal_decided", "经复核，维持不予受理。")
    assert [d["kind"] for d in body["deliveries"]] == ["extended", "note", "status_changed", "appeal_decided"]
    again = await client.post(f"{url}/appeal-decision", json={"uphold": False, "reason": "重新受理"},
                              headers=supervisor.headers)
    assert again.status_code == 409
    assert [a for a in await service.audit_actions(number) if a != "case.view"] == [
        "case.extension_requested", "case.extension_refused", "case.extension_requested", "case.extension_approved",
        "case.note_to_reporter", "case.status", "case.appeal_decided"]
    admin = await service.admin()
    entries = (await client.get("/api/v1/audit", params={"case": number, "per_page": 200},
                                headers=admin.headers)).json()["items"]
    assert {(entry["action"], entry["ip"]) for entry in entries} == {  # every action with the caller's address
        (action, "203.0.113.7") for action in (
            "case.view", "case.extension_requested", "case.extension_refused", "case.extension_approved",
            "case.note_to_reporter", "case.status", "case.appeal_decided")}


GROUPS = {"clean_hall": -100101, "work_style": -100202, "petitions": -100303}


async def test_the_configured_nth_transfer_of_a_case_alerts_the_new_queues_staff_groups(
        database: Any, tmp_path: Path) -> None:
    """On SQLite and PostgreSQL: with the city's `transfer_alert_after` at 2, the first move of a case tells no
    one, the second and every later one queue a notice to the staff groups of the queue it lands in."""
    context = make_context(database, tmp_path)
    city = context.city.model_copy(update={
        "queues": [q.model_copy(update={"telegram_chat_id": GROUPS.get(q.code)}) for q in context.city.queues],
        "loop": context.city.loop.model_copy(update={"transfer_alert_after": 2})})
    context = replace(context, city=city)
    app = FastAPI()
    mount_console(app, context)
    async with database.sessionmaker.begin() as session:
        supervisor = await create_staff(session, "wang", StaffRole.SUPERVISOR)
        token, _ = await staff_actions.create_api_token(session, supervisor, "tests", actor=supervisor)
        case, _ = await file_case(session, queue="clean_hall")
    headers = {"Authorization": f"Bearer {token}"}

    async def alerts() -> list[tuple[str, str, int]]:
        async with database.read_sessionmaker() as session:
            rows = (await session.execute(select(OutboxMessage).where(OutboxMessage.case_id == case.id)
                                          .order_by(OutboxMessage.id))).scalars()
            return [(m.channel, m.recipient, m.payload["transfers"]) for m in rows if m.kind == "transfer_alert"]

    seen: list[list[tuple[str, str, int]]] = []
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://console.test") as client:
        for queue in ("work_style", "petitions", "clean_hall"):
            moved = await client.post(f"/api/v1/cases/{case.case_number}/move", headers=headers,
                                      json={"queue": queue, "reason": "职责不符"})
            assert (moved.status_code, moved.json()["transfer_count"]) == (200, len(seen) + 1), moved.text
            seen.append(await alerts())
    assert seen == [[], [("telegram", "-100303", 2)],
                    [("telegram", "-100303", 2), ("telegram", "-100101", 3)]]
    async with database.read_sessionmaker() as session:
        last = (await session.execute(select(OutboxMessage).where(OutboxMessage.kind == "transfer_alert")
                                      .order_by(OutboxMessage.id.desc()).limit(1))).scalar_one()
    shown = render(last.payload, Texts(city.texts), "https://qinglian.example.cn", city=city).text
    assert f"案件 {case.case_number} 已被转办 3 次" in shown and "请主管关注" in shown
    assert f"https://qinglian.example.cn/console/case/{case.case_number}" in shown


async def test_a_reviewer_who_moves_a_case_out_of_their_queues_gets_204(service: Service) -> None:
    reviewer = await service.staff("li", queues=("clean_hall",))
    number = await service.case(queue="clean_hall")
    without_reason = await service.client.post(f"/api/v1/cases/{number}/move", headers=reviewer.headers,
                                               json={"queue": "triage", "reason": "不是窗口问题"})
    assert without_reason.status_code == 422 and "transfer reasons" in without_reason.json()["detail"]
    moved = await service.client.post(f"/api/v1/cases/{number}/move", headers=reviewer.headers,
                                      json={"queue": "triage", "reason": "不是窗口问题",
                                            "reason_code": "分类有误 Wrong category"})
    assert (moved.status_code, moved.content) == (204, b"")
    assert (await service.client.get(f"/api/v1/cases/{number}", headers=reviewer.headers)).status_code == 404


async def test_identity_is_revealed_only_on_request_and_audited(service: Service) -> None:
    admin = await service.admin()
    real = await service.case(anonymous=False)
    anonymous = await service.case()
    revealed = await service.client.post(f"/api/v1/cases/{real}/reveal-identity", headers=admin.headers,
                                         json={"reason": "核实举报人身份"})
    assert revealed.json() == {"case_number": real, "name": REPORTER_NAME, "phone": REPORTER_PHONE}
    refused = await service.client.post(f"/api/v1/cases/{anonymous}/reveal-identity", headers=admin.headers,
                                        json={"reason": "核实举报人身份"})
    assert (refused.status_code, refused.json()) == (409, {"detail": "the reporter is anonymous"})
    assert await service.audit_actions(real) == ["case.reveal_identity"]
    detail = (await service.client.get(f"/api/v1/cases/{real}", headers=admin.headers)).json()
    other = (await service.client.get(f"/api/v1/cases/{anonymous}", headers=admin.headers)).json()
    assert (detail["can_reveal_identity"], other["can_reveal_identity"]) == (True, False)


REVEAL_REASON_REFUSED = ("say why you need the reporter's identity in at least 4 letters or digits (the reason is "
                         "recorded)")


async def test_a_reveal_needs_a_reason_of_at_least_four_letters_or_digits(service: Service) -> None:
    admin = await service.admin()
    real = await service.case(anonymous=False)
    for token in (".", "。。", " ok! ", "核 实"):
        refused = await service.client.post(f"/api/v1/cases/{real}/reveal-identity", headers=admin.headers,
                                            json={"reason": token})
        assert (refused.status_code, refused.json()) == (422, {"detail": REVEAL_REASON_REFUSED}), token
    assert await service.audit_actions(real) == []
    revealed = await service.client.post(f"/api/v1/cases/{real}/reveal-identity", headers=admin.headers,
                                         json={"reason": "核实线索"})
    assert revealed.json() == {"case_number": real, "name": REPORTER_NAME, "phone": REPORTER_PHONE}


async def test_no_case_response_carries_the_reporters_identity(service: Service) -> None:
    admin = await service.admin()
    number = await service.case(anonymous=False, evidence=JPEG)
    url = f"/api/v1/cases/{number}"
    client, headers = service.client, admin.headers
    responses = [
        await client.get("/api/v1/cases", headers=headers),
        await client.get("/api/v1/cases", params={"q": "窗口"}, headers=headers),
        await client.get(url, headers=headers),
        await client.post(f"{url}/accept", headers=headers),
        await client.post(f"{url}/label", json={"action": "correct", "label": "formalism"}, headers=headers),
        await client.post(f"{url}/move", json={"queue": "clean_hall", "reason": "r"}, headers=headers),
        await client.post(f"{url}/status", json={"status": "in_handling"}, headers=headers),
        await client.post(f"{url}/notes", json={"body": "note"}, headers=headers),
        await client.get(f"{url}/notes", headers=headers),
        await client.post(f"{url}/assign", json={"username": "root"}, headers=headers),
        await client.post(f"{url}/answer", json={"text": "答复"}, headers=headers),
        await client.get("/api/v1/queues", headers=headers),
    ]
    for response in responses:
        assert response.status_code in (200, 201), response.text
        text = response.text
        for secret in (REPORTER_NAME, REPORTER_PHONE, REPORTER_REF, "reporter_name", "reporter_phone",
                       "reporter_ref", "telegram", "channel"):
            assert secret not in text, (secret, response.request.url)
    schema = (await client.get("/api/openapi.json")).json()["components"]["schemas"]
    for name in ("CaseSummary", "CaseDetailOut", "TraceEventOut"):
        assert not {"reporter_name", "reporter_phone", "reporter_ref", "channel"} & set(schema[name]["properties"])


# --- lists, paging and filters ---------------------------------------------------------------------


async def test_the_confidence_filter_takes_fractions_and_includes_both_ends(service: Service) -> None:
    supervisor = await service.staff("wang", StaffRole.SUPERVISOR)
    certain = await service.case(queue="clean_hall", confidence=1.0)
    half = await service.case(queue="clean_hall", confidence=0.5)
    await service.case(queue="triage", label="other", confidence=0.3)

    async def numbers(**params: Any) -> list[str]:
        response = await service.client.get("/api/v1/cases", params=params, headers=supervisor.headers)
        assert response.status_code == 200, response.text
        return [item["case_number"] for item in response.json()["items"]]

    assert await numbers(confidence_min=0.5, confidence_max=1) == [half, certain]
    assert await numbers(confidence_min=1) == [certain]
    assert await numbers(confidence_min=0.4, confidence_max=0.5) == [half]
    described = {parameter["name"]: parameter.get("description") or parameter["schema"].get("description", "")
                 for parameter in
                 (await service.client.get("/api/openapi.json")).json()["paths"]["/api/v1/cases"]["get"]["parameters"]}
    assert "at most this, as a fraction 0–1" in described["confidence_max"]


async def test_paging_and_filters(service: Service) -> None:
    supervisor = await service.staff("wang", StaffRole.SUPERVISOR)
    numbers = [await service.case(queue="clean_hall", confidence=0.9) for _ in range(5)]
    low = await service.case(queue="triage", label="medical", confidence=0.3, district="kaifu")
    old = await service.case(queue="work_style", label="formalism", district=None, created_days_ago=40,
                             description="村务公开栏半年没有更新，低保名单不公示。")

    async def listed(**params: Any) -> dict[str, Any]:
        response = await service.client.get("/api/v1/cases", params=params, headers=supervisor.headers)
        assert response.status_code == 200, response.text
        return dict(response.json())

    def numbers_of(page: dict[str, Any]) -> list[str]:
        return [item["case_number"] for item in page["items"]]

    first = await listed(per_page=3)
    assert (first["total"], first["total_capped"], first["per_page"], first["prev"]) == (7, False, 3, None)
    assert numbers_of(first) == [low, numbers[4], numbers[3]]
    second = await listed(per_page=3, after=first["next_cursor"])
    last = await listed(per_page=3, after=second["next_cursor"])
    assert numbers_of(last) == [old] and (last["next"], last["next_cursor"]) == (None, None)
    back = (await service.client.get(second["prev"], headers=supervisor.headers)).json()
    assert numbers_of(back) == numbers_of(first) and back["prev"] is None
    forged = await service.client.get("/api/v1/cases", params={"after": "not-a-cursor"}, headers=supervisor.headers)
    assert forged.status_code == 422 and "after" in forged.json()["detail"]
    assert numbers_of(await listed(label="medical")) == [low]
    assert numbers_of(await listed(district="kaifu")) == [low]
    assert numbers_of(await listed(district="unsure")) == [old]
    assert numbers_of(await listed(queue="work_style")) == [old]
    assert numbers_of(await listed(confidence_max=0.5)) == [low]
    assert len(numbers_of(await listed(confidence_min=0.5))) == 6
    assert numbers_of(await listed(needs_labelling=True)) == [low]
    assert numbers_of(await listed(q="低保")) == [old]
    assert numbers_of(await listed(q=old)) == [old]
    today = utcnow().date()
    assert numbers_of(await listed(created_to=str(today - timedelta(days=30)))) == [old]
    assert old not in numbers_of(await listed(created_from=str(today - timedelta(days=1))))
    assert (await listed(status="routed"))["total"] == 7
    assert (await listed(status="closed"))["total"] == 0
    summary = first["items"][0]
    assert set(summary) == {"case_number", "status", "queue", "label", "label_confidence", "label_status",
                            "district", "place", "excerpt", "anonymous", "assignee", "created_at", "accept_due_at",
                            "resolve_due_at", "overdue"}
    assert summary["overdue"] is False


async def test_overdue_flag_and_filter(service: Service) -> None:
    supervisor = await service.staff("wang", StaffRole.SUPERVISOR)
    late = await service.case()
    await service.case()
    async with service.database.sessionmaker.begin() as session:
        from sqlalchemy import update

        from storage.models import Case

        await session.execute(update(Case).where(Case.case_number == late)
                              .values(accept_due_at=utcnow() - timedelta(days=1)))
    response = await service.client.get("/api/v1/cases", params={"overdue": "true"}, headers=supervisor.headers)
    assert [(c["case_number"], c["overdue"]) for c in response.json()["items"]] == [(late, True)]
    queues = {q["code"]: q for q in (await service.client.get("/api/v1/queues", headers=supervisor.headers)).json()}
    assert (queues["clean_hall"]["new"], queues["clean_hall"]["overdue"]) == (2, 1)
    assert len(queues) == len(service.context.city.queues)


# --- bad input -------------------------------------------------------------------------------------


async def test_bad_input_is_a_4xx_with_a_reason(service: Service) -> None:
    supervisor = await service.staff("wang", StaffRole.SUPERVISOR)
    number = await service.case()
    url = f"/api/v1/cases/{number}"
    client, headers = service.client, supervisor.headers

    async def refused(method: str, path: str, expected: int = 422, **kwargs: Any) -> str:
        response = await client.request(method, path, headers={**headers, **kwargs.pop("headers", {})}, **kwargs)
        assert response.status_code == expected, (path, kwargs, response.text)
        return json.dumps(response.json()["detail"], ensure_ascii=False)

    assert "JSON decode error" in await refused("POST", f"{url}/notes", content=b'{"body": ',
                                                 headers={"content-type": "application/json"})
    assert "Field required" in await refused("POST", f"{url}/notes", json={})
    assert "Extra inputs are not permitted" in await refused("POST", f"{url}/notes", json={"body": "x", "pin": True})
    assert "'slow_service'" in await refused("POST", f"{url}/label", json={"action": "correct", "label": "spam"})
    assert "correcting needs the new label" in await refused("POST", f"{url}/label", json={"action": "correct"})
    assert "'confirm' or 'correct'" in await refused("POST", f"{url}/label", json={"action": "approve"})
    assert "'in_handling'" in await refused("POST", f"{url}/status", json={"status": "duplicate"})
    assert "unknown queue 'nowhere'" in await refused("POST", f"{url}/move", json={"queue": "nowhere", "reason": "r"})
    assert "at least 1 character" in await refused("POST", f"{url}/move", json={"queue": "triage", "reason": "  "})
    assert "at most 3000 characters" in await refused("POST", f"{url}/answer", json={"text": "字" * 3001})
    assert "at most 10000 characters" in await refused("POST", f"{url}/notes", json={"body": "x" * 10_001})
    assert "at least 1 character" in await refused("POST", f"{url}/answer", json={"text": " \n "})
    for invisible in ("\u200b", "\u0000", "\u202e\u2066 \u2069"):  # answered with nothing the reporter can read
        for path, field in (("answer", "text"), ("tell-reporter", "text"), ("more-info", "question"),
                            ("notes", "body")):
            assert "no visible characters" in await refused("POST", f"{url}/{path}", json={field: invisible})
    assert "unknown query parameter 'unknown_param'" in await refused(  # it went into the export's audit row
        "GET", "/api/v1/export/cases", params={"unknown_param": "1"})
    assert "after and before: give one cursor, not both" in await refused(
        "GET", "/api/v1/cases", params={"after": "x", "before": "y"})
    assert "no case QL-2026-424242" in await refused("POST", f"{url}/duplicate", json={"of": "QL-2026-424242"})
    assert "no active staff user 'ghost'" in await refused("POST", f"{url}/assign", json={"username": "ghost"})
    assert "after: not a cursor" in await refused("GET", "/api/v1/cases", params={"after": "page-0"})
    assert "less than or equal to 200" in await refused("GET", "/api/v1/cases", params={"per_page": 201})
    assert "greater than or equal to 1" in await refused("GET", "/api/v1/cases", params={"per_page": 0})
    assert "less than or equal to 1" in await refused("GET", "/api/v1/cases", params={"confidence_min": 1.5})
    assert "valid date" in await refused("GET", "/api/v1/cases", params={"created_from": "yesterday"})
    assert "created_from is after created_to" in await refused(
        "GET", "/api/v1/cases", params={"created_from": "2026-03-02", "created_to": "2026-03-01"})
    assert "unknown district 'atlantis'; unknown queue 'x'" in await refused(
        "GET", "/api/v1/cases", params={"district": "atlantis", "queue": "x"})
    assert "'received'" in await refused("GET", "/api/v1/cases", params={"status": "lost"})
    assert "valid integer" in await refused("GET", f"{url}/evidence/abc")
    assert "no such evidence file" in await refused("GET", f"{url}/evidence/99", expected=404)


# --- sessions, CSRF and tokens ---------------------------------------------------------------------


async def test_cookie_sessions_need_the_csrf_header_on_unsafe_calls(service: Service) -> None:
    supervisor = await service.staff("wang", StaffRole.SUPERVISOR)
    number = await service.case()
    cookies, csrf = await service.login(supervisor)
    client = httpx.AsyncClient(transport=service.client._transport, base_url="http://console.test", cookies=cookies)
    async with client:
        assert (await client.get(f"/api/v1/cases/{number}")).status_code == 200
        me = (await client.get("/api/v1/me")).json()
        assert (me["username"], me["authenticated_by"]) == ("wang", "session")
        for headers in ({}, {"X-CSRF-Token": "forged"}):
            response = await client.post(f"/api/v1/cases/{number}/accept", headers=headers)
            assert response.status_code == 403 and "CSRF" in response.json()["detail"]
            assert (await client.post("/api/v1/tokens", json={"name": "x"}, headers=headers)).status_code == 403
        accepted = await client.post(f"/api/v1/cases/{number}/accept", headers={"X-CSRF-Token": csrf})
        assert accepted.json()["status"] == "accepted"
        created = await client.post("/api/v1/tokens", json={"name": "reporting dashboard"},
                                    headers={"X-CSRF-Token": csrf})
    assert created.status_code == 201
    token = created.json()
    assert token["token"].startswith("qlt_") and token["name"] == "reporting dashboard"
    bearer = {"Authorization": f"Bearer {token['token']}"}
    assert (await service.client.get("/api/v1/me", headers=bearer)).json()["authenticated_by"] == "token"
    # a token cannot mint more tokens; it can list and revoke its owner's
    minted = await service.client.post("/api/v1/tokens", json={"name": "more"}, headers=bearer)
    assert minted.status_code == 403 and "console login" in minted.json()["detail"]
    listed = (await service.client.get("/api/v1/tokens", headers=bearer)).json()
    assert [(t["name"], t["revoked"]) for t in listed] == [("tests", False), ("reporting dashboard", False)]
    assert all("token" not in t for t in listed)
    other = await service.staff("zhao", queues=("triage",))
    assert (await service.client.delete(f"/api/v1/tokens/{token['id']}", headers=other.headers)).status_code == 404
    assert (await service.client.delete(f"/api/v1/tokens/{token['id']}", headers=bearer)).status_code == 204
    assert (await service.client.get("/api/v1/me", headers=bearer)).status_code == 401
    assert (await service.client.get("/api/v1/me", headers=supervisor.headers)).status_code == 200


# --- administration --------------------------------------------------------------------------------


async def test_admins_manage_staff_accounts(service: Service) -> None:
    admin = await service.admin()
    client, headers = service.client, admin.headers
    created = await client.post("/api/v1/staff", headers=headers, json={
        "username": "chen", "display_name": "陈审核", "queues": ["clean_hall", "triage"], "password": PASSWORD})
    assert created.status_code == 201
    assert {k: created.json()[k] for k in ("username", "display_name", "role", "queues", "active")} == {
        "username": "chen", "display_name": "陈审核", "role": "reviewer", "queues": ["clean_hall", "triage"],
        "active": True}
    clash = await client.post("/api/v1/staff", headers=headers, json={"username": "chen", "password": PASSWORD})
    assert (clash.status_code, clash.json()) == (409, {"detail": "user 'chen' exists already"})
    short = await client.post("/api/v1/staff", headers=headers, json={"username": "liu", "password": "short"})
    assert short.status_code == 422
    unknown = await client.post("/api/v1/staff", headers=headers,
                                json={"username": "liu", "password": PASSWORD, "queues": ["mars"]})
    assert (unknown.status_code, unknown.json()) == (422, {"detail": "unknown queue mars"})
    bad_name = await client.post("/api/v1/staff", headers=headers,
                                 json={"username": "Robert'); --", "password": PASSWORD})
    assert bad_name.status_code == 422

    changed = await client.patch("/api/v1/staff/chen", headers=headers,
                                 json={"role": "supervisor", "queues": ["triage", "work_style"], "totp_required": True})
    assert {k: changed.json()[k] for k in ("role", "queues", "totp_required")} == {
        "role": "supervisor", "queues": ["triage", "work_style"], "totp_required": True}
    assert (await client.patch("/api/v1/staff/nobody", headers=headers, json={"active": False})).status_code == 404
    for change in ({"role": "reviewer"}, {"active": False}):
        refused = await client.patch("/api/v1/staff/root", headers=headers, json=change)
        assert refused.status_code == 409
        assert refused.json() == {"detail": "you cannot demote or disable your own account"}
    listed = (await client.get("/api/v1/staff", headers=headers)).json()
    assert [(u["username"], u["role"]) for u in listed] == [("chen", "supervisor"), ("root", "admin")]
    assert all("password" not in json.dumps(u) for u in listed)
    log = (await client.get("/api/v1/audit", params={"actor": "root"}, headers=headers)).json()["items"]
    assert [e["action"] for e in reversed(log)][-5:] == [
        "staff.create", "staff.assign_queues", "staff.role", "staff.assign_queues", "staff.totp_required"]


async def test_openapi_documents_the_api(service: Service) -> None:
    document = (await service.client.get("/api/openapi.json")).json()
    paths = document["paths"]
    assert {"/api/v1/cases", "/api/v1/cases/{case_number}", "/api/v1/cases/{case_number}/answer",
            "/api/v1/cases/{case_number}/reveal-identity", "/api/v1/queues", "/api/v1/me", "/api/v1/tokens",
            "/api/v1/tokens/{token_id}", "/api/v1/audit", "/api/v1/staff", "/api/v1/staff/{username}"} <= set(paths)
    answer = paths["/api/v1/cases/{case_number}/answer"]["post"]
    assert answer["summary"] == "Answer the reporter"
    assert {"200", "204", "401", "403", "404", "409", "422"} <= set(answer["responses"])
    assert answer["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].endswith("/CaseDetailOut")
    listing = {p["name"] for p in paths["/api/v1/cases"]["get"]["parameters"]}
    assert {"status", "label", "district", "queue", "created_from", "created_to", "confidence_min",
            "confidence_max", "overdue", "needs_labelling", "q", "after", "before", "per_page"} <= listing
    docs = await service.client.get("/api/docs")
    assert docs.status_code == 200 and "swagger" in docs.text.lower()


# --- end to end: an answer reaches a Telegram reporter ---------------------------------------------

TOKEN = "424242:TEST-qinglian-api"


@pytest.fixture(scope="module")
def telegram_service(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TelegramStandIn, LiveService]]:
    standin = TelegramStandIn(token=TOKEN)
    standin.start()
    live = LiveService(tmp_path_factory.mktemp("api-telegram"), {
        "QINGLIAN_TELEGRAM_TOKEN": TOKEN, "QINGLIAN_TELEGRAM_API_URL": standin.root_url,
        "QINGLIAN_SECRET_KEY": "api-test-secret-" + "x" * 32,
    })
    live.start()
    yield standin, live
    live.stop()
    standin.stop()
    assert standin.violations == []


def _token_for(live: LiveService, username: str) -> str:
    """An API token for a staff account, made with the storage actions against the service's database."""
    from storage.db import create_engine, create_sessionmaker

    async def make() -> str:
        engine = create_engine(f"sqlite+aiosqlite:///{live.data_dir / 'qinglian.db'}", make_test_keyring())
        try:
            async with create_sessionmaker(engine).begin() as session:
                user = await staff_actions.get_staff_by_username(session, username)
                assert user is not None
                token, _ = await staff_actions.create_api_token(session, user, "e2e", actor=user)
                return token
        finally:
            await engine.dispose()

    return asyncio.run(make())


def test_an_answer_through_the_api_reaches_the_telegram_reporter(
        telegram_service: tuple[TelegramStandIn, LiveService]) -> None:
    from tests.channels.test_telegram import Chat, file_report

    standin, live = telegram_service
    chat = Chat(standin, 73125501)
    code = file_report(chat)
    chat.settle(live)
    # the report is about a service window, so the classifier sends it to the Clean Hall queue
    added = subprocess.run([sys.executable, "-m", "bot.cli", "staff", "add", "hall", "--role", "reviewer",
                            "--queue", "clean_hall", "--password", PASSWORD],
                           cwd=REPO, env=live.env, capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    headers = {"Authorization": f"Bearer {_token_for(live, 'hall')}"}
    with httpx.Client(base_url=live.url, headers=headers, timeout=15) as api:
        cases = api.get("/api/v1/cases").json()["items"]
        assert len(cases) == 1 and cases[0]["queue"] == "clean_hall" and cases[0]["label"] == "slow_service"
        number = cases[0]["case_number"]
        answered = api.post(f"/api/v1/cases/{number}/answer", json={"text": "经核查，已约谈3号窗口负责人并督促整改。"})
        assert (answered.status_code, answered.json()["status"]) == (200, "answered")
        text = chat.expect("收到办理答复")
        assert number in text and "已约谈3号窗口负责人并督促整改" in text
        status = chat.say(f"/status {code}", expect="已约谈3号窗口负责人并督促整改")
        assert "当前状态：已答复" in status
        detail = api.get(f"/api/v1/cases/{number}")
        assert detail.json()["status"] == "answered" and detail.json()["trace"][-1]["actor"] == "staff"
        assert str(chat.chat_id) not in detail.text


def test_a_reporter_who_blocked_the_bot_shows_failed_blocked_on_the_ticket(
        telegram_service: tuple[TelegramStandIn, LiveService]) -> None:
    from tests.channels.test_telegram import Chat, file_report

    standin, live = telegram_service
    chat = Chat(standin, 73125599)
    file_report(chat)
    chat.settle(live)
    standin.block_user(chat.chat_id)
    added = subprocess.run([sys.executable, "-m", "bot.cli", "staff", "add", "chief", "--role", "admin",
                            "--password", PASSWORD], cwd=REPO, env=live.env, capture_output=True, text=True, timeout=60)
    assert added.returncode == 0, added.stderr
    with httpx.Client(base_url=live.url, headers={"Authorization": f"Bearer {_token_for(live, 'chief')}"},
                      timeout=15) as api:
        number = next(item["case_number"] for item in api.get("/api/v1/cases").json()["items"]
                      if item["status"] == "routed")
        answered = api.post(f"/api/v1/cases/{number}/answer", json={"text": "经核查，情况属实，已处理。"})
        assert answered.status_code == 200
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            deliveries = api.get(f"/api/v1/cases/{number}").json()["deliveries"]
            if deliveries and deliveries[-1]["status"] != "pending":
                break
            time.sleep(0.2)
    assert deliveries[-1]["kind"] == "answer" and deliveries[-1]["status"] == "failed"
    assert deliveries[-1]["reason"].startswith("blocked: the resident blocked the bot")


async def test_a_body_of_thousands_of_unknown_fields_gets_a_short_list_of_reasons(service: Service) -> None:
    """Seen as an attacker on the web chat (attack1) and true of every JSON endpoint: each unknown field was a
    reason of its own, so 800 KB of them came back as megabytes of reasons while the service answered nobody else.
    The first twenty are listed and the rest counted."""
    reviewer = await service.staff("li", queues=("clean_hall",))
    own = await service.case(queue="clean_hall")
    body = {"body": "举报人是该窗口的前同事", **{f"field{i}": i for i in range(5000)}}
    refused = await service.client.post(f"/api/v1/cases/{own}/notes", json=body, headers=reviewer.headers)
    assert refused.status_code == 422
    reasons = refused.json()["detail"]
    assert len(reasons) == 21 and reasons[0]["loc"] == ["body", "field0"], reasons[:2]
    assert reasons[-1]["msg"] == "and 4980 more reasons like these", reasons[-1]
