"""The classifier in the console: "needs labelling", and for administrators the model versions, training a
new one, comparing two, promoting one and rolling back."""

from __future__ import annotations

import asyncio
import functools
import logging
from typing import TYPE_CHECKING, Annotated, Any
from urllib.parse import urlencode

from fastapi import Form, Request
from fastapi.responses import JSONResponse, Response

from console import accounts, model_versions, training
from console.auth import Principal, visible_queues
from console.context import ConsoleContext
from console.operations import OperationError, require_admin
from console.rendering import Names, redirect, render, secure
from console.routes import common
from console.routes.common import CsrfField, PagePrincipal, check_csrf, page_count, page_router, parse_page
from nlp.errors import NlpError
from storage import training_data
from storage.evidence_files import SealedFiles

if TYPE_CHECKING:
    from nlp.registry import ModelInfo, ModelRegistry

log = logging.getLogger(__name__)
RECENT_EVENTS = 20

router = page_router()


def _registry(context: ConsoleContext) -> ModelRegistry:
    from nlp.registry import ModelRegistry  # scikit-learn and the models load only when an admin asks

    return ModelRegistry(context.models_dir, SealedFiles(context.database.keyring))


@router.get("/console/labelling")
async def labelling_cases(request: Request, principal: PagePrincipal, page: str = "1") -> Response:
    """Unclassified and low-confidence tickets (least confident first), then corrected ones."""
    number = parse_page(page)
    per_page = common.PER_PAGE
    threshold = principal.context.city.routing.confidence_threshold
    async with principal.context.database.read_sessionmaker() as session:
        items, total = await training_data.needs_labelling(
            session, threshold=threshold, queues=visible_queues(principal.user), limit=per_page,
            offset=(number - 1) * per_page)
        counts = await training_data.staff_label_counts(session)
    return render(request, principal, "labelling.html", items=items, total=total, page=number,
                  pages=page_count(total, per_page), counts=counts, threshold=threshold,
                  page_url=lambda n: f"/console/labelling?{urlencode({'page': str(n)})}")


@router.get("/console/models")
async def models(request: Request, principal: PagePrincipal, a: str = "", b: str = "") -> Response:
    require_admin(principal)
    context = principal.context
    registry = _registry(context)
    try:
        versions = await asyncio.to_thread(registry.list)
        events = await asyncio.to_thread(registry.events)
        comparison = None
        if a and b:
            known = {info.version for info in versions}
            if a not in known or b not in known:
                raise OperationError(404, "compare_two")
            comparison = await asyncio.to_thread(model_versions.compare, registry, a, b)
    except NlpError as problem:  # registry.json unreadable: say which file and what to do
        raise training.model_refusal(problem) from None
    status = await asyncio.to_thread(training.training_status, context.data_dir)
    async with context.database.read_sessionmaker() as session:
        counts = await training_data.staff_label_counts(session)
    running = status.get("state") == "running"
    extra: dict[str, Any] = {} if running or request.query_params.get("done") != "training" else {"done": None}
    calibrations = {info.version: model_versions.calibration(info.metrics) for info in versions}
    can_roll_back = model_versions.rollback_target(events, {info.version for info in versions}) is not None
    load_failure = context.classifier.load_failure
    load_reason = (Names(context.city).refusal(training.load_failure_reason(context.classifier.load_error,
                                                                           load_failure[1]))
                   if load_failure else None)
    return render(request, principal, "models.html", versions=list(reversed(versions)), calibrations=calibrations,
                  configured_threshold=context.city.routing.confidence_threshold,
                  events=list(reversed(events))[:RECENT_EVENTS], comparison=comparison, status=status,
                  stage=training.stage_name(str(status.get("stage") or "")), running=running, a=a, b=b,
                  failure=training.failure_text(status),
                  counts=counts, serving=context.classifier.version, load_failure=load_failure, load_reason=load_reason,
                  can_roll_back=can_roll_back, **extra)


async def _serve_promoted(principal: Principal) -> None:
    """Switch this process's classifier to the promoted model now; the other serving processes notice the
    change within `QINGLIAN_MODEL_CHECK_SECONDS` (bot.classification)."""
    try:
        await principal.context.classifier.reload_if_changed()
    except Exception:
        log.exception("the promoted model could not be loaded at once")


@router.post("/console/models/train")
async def train(principal: PagePrincipal, *, csrf: CsrfField = "") -> Response:
    check_csrf(principal, csrf)
    require_admin(principal)
    try:
        run_id = await training.start_training(principal.context.database, principal.context.data_dir)
    except NlpError as refused:  # nothing new to learn, or the registry cannot be read
        raise training.model_refusal(refused) from None
    except training.TrainingAlreadyRunning as running:
        raise running.refusal() from None
    except training.TrainingError as problem:
        raise OperationError(409, "model_refused", detail=problem) from None
    await accounts.record(principal, "model.train", {"run": run_id})
    return redirect("/console/models?done=training")


@router.get("/console/models/training.json")
async def training_progress(principal: PagePrincipal) -> Response:
    """The training run's progress for the models page, which shows it live while a run goes on."""
    require_admin(principal)
    status = await asyncio.to_thread(training.training_status, principal.context.data_dir)
    stage = training.stage_name(str(status.get("stage") or ""))
    return secure(JSONResponse({
        "state": status.get("state"), "percent": int(status.get("percent") or 0),
        "stage_zh": stage[0] if stage else "", "stage_en": stage[1] if stage else "",
        "version": status.get("version"), "error": status.get("error")}))


async def _changes(registry: ModelRegistry, current: ModelInfo | None, target: str,
                   names: Names) -> tuple[dict[str, Any] | None, tuple[str, str] | None]:
    """What the confirmation shows would change from the serving version to `target` (`model_versions.compare`),
    or None with why they could not be compared (a version this installation cannot load: the refusal's text)."""
    if current is None or current.version == target:
        return None, None
    try:
        return await asyncio.to_thread(model_versions.compare, registry, current.version, target), None
    except NlpError as problem:
        return None, names.refusal(training.model_refusal(problem))


@router.post("/console/models/promote")
async def promote(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                  version: Annotated[str, Form(max_length=80)], force: Annotated[str, Form()] = "",
                  confirm: Annotated[str, Form(max_length=1)] = "") -> Response:
    """Promote a version, once the administrator confirmed it on the page this answers with first."""
    check_csrf(principal, csrf)
    require_admin(principal)
    registry = _registry(principal.context)
    if confirm != "1":
        try:
            candidate = await asyncio.to_thread(registry.get, version)
            current = await asyncio.to_thread(registry.promoted)
            gate = None if force == "1" else await asyncio.to_thread(registry.promotion_refusal, version)
        except NlpError as problem:
            raise training.model_refusal(problem) from None
        refusal = Names(principal.context.city).refusal(training.model_refusal(gate)) if gate else None
        changes, unchanged_reason = await _changes(registry, current, candidate.version,
                                                    Names(principal.context.city))
        return render(request, principal, "confirm_model.html", action="promote", target=candidate,
                      current=current, force=force == "1", refusal=refusal, changes=changes,
                      unchanged_reason=unchanged_reason)
    try:
        changed = await asyncio.to_thread(registry.promote, version, force=force == "1", by=principal.user.username)
        events = [] if changed else await asyncio.to_thread(registry.events)
    except NlpError as problem:
        raise training.model_refusal(problem) from None
    if not changed:  # another administrator promoted it since this one's page was shown
        by = next((event.get("by") for event in reversed(events) if event.get("version") == version), None)
        raise OperationError(409, "model_already_promoted", version=version, by=by or "—")
    await accounts.record(principal, "model.promote", {"version": version, "forced": force == "1"})
    await _serve_promoted(principal)
    return redirect("/console/models?done=promoted")


@router.post("/console/models/rollback")
async def rollback(request: Request, principal: PagePrincipal, *, csrf: CsrfField = "",
                   confirm: Annotated[str, Form(max_length=1)] = "",
                   version: Annotated[str, Form(max_length=80)] = "") -> Response:
    """Roll back to the previously promoted version, once the administrator confirmed it: to `version`, the one
    the confirmation showed (refused if another administrator promoted or rolled back meanwhile)."""
    check_csrf(principal, csrf)
    require_admin(principal)
    registry = _registry(principal.context)
    if confirm != "1":
        try:
            current = await asyncio.to_thread(registry.promoted)
            versions = {info.version: info for info in await asyncio.to_thread(registry.list)}
            target = model_versions.rollback_target(await asyncio.to_thread(registry.events), set(versions))
        except NlpError as problem:
            raise training.model_refusal(problem) from None
        if target is None:
            raise OperationError(409, "model_rollback_none")  # as the registry says it
        changes, unchanged_reason = await _changes(registry, current, target, Names(principal.context.city))
        return render(request, principal, "confirm_model.html", action="rollback", target=versions[target],
                      current=current, force=False, refusal=None, changes=changes, unchanged_reason=unchanged_reason)
    try:
        info = await asyncio.to_thread(functools.partial(registry.rollback, by=principal.user.username,
                                                         to=version or None))
    except NlpError as problem:
        raise training.model_refusal(problem) from None
    await accounts.record(principal, "model.rollback", {"version": info.version})
    await _serve_promoted(principal)
    return redirect("/console/models?done=rolled_back")
