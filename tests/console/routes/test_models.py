"""The models page: administrators only; promoting and rolling back refuse what cannot be done, and switch
the model the service classifies with at once."""

from __future__ import annotations

import asyncio
from pathlib import Path

from nlp.corpus import Example, load_seed_corpus
from nlp.labels import LABELS
from nlp.registry import ModelRegistry, train_and_register
from storage.models import StaffRole
from tests.console.conftest import ConsoleHarness, location


async def test_models_page_for_admins(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        page = await client.get("/console/models")
        assert page.status_code == 200 and "立即训练新版本" in page.text
        refused = await client.post("/console/models/promote", data={"csrf": csrf, "version": "nope"})
        assert refused.status_code == 409
        assert (await client.post("/console/models/rollback", data={"csrf": csrf})).status_code == 409


def _second_version(models_dir: Path) -> str:
    """A quick, weaker version beside the promoted default one: 12 seed examples of each label."""
    examples: list[Example] = []
    for label in LABELS:
        examples += [e for e in load_seed_corpus("train") if e.label == label][:12]
    return train_and_register(ModelRegistry(models_dir), examples, source="small").version


async def test_promoting_and_rolling_back_switch_the_serving_model_at_once(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    default = console.context.classifier_version()
    assert default is not None
    newer = await asyncio.to_thread(_second_version, console.context.models_dir)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        assert f"<code>{default}</code>" in (await client.get("/console/models")).text
        promoted = await client.post("/console/models/promote", data={"csrf": csrf, "version": newer, "force": "1",
                                                                      "confirm": "1"})
        assert location(promoted) == "/console/models?done=promoted"
        assert console.context.classifier_version() == newer
        page = (await client.get("/console/models?done=promoted")).text
        assert "服务中的模型" in page and f"<code>{newer}</code>" in page and "模型已启用。" in page
        rolled_back = await client.post("/console/models/rollback", data={"csrf": csrf, "confirm": "1"})
        assert location(rolled_back) == "/console/models?done=rolled_back"
        assert console.context.classifier_version() == default
    assert [(entry.action, entry.detail) for entry in await console.audit() if entry.action.startswith("model.")] == [
        ("model.promote", {"version": newer, "forced": True}), ("model.rollback", {"version": default})]
