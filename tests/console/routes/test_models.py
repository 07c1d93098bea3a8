"""The models page: administrators only; promoting and rolling back refuse what cannot be done, and switch
the model the service classifies with at once."""

from __future__ import annotations

import asyncio
import functools
import html
import json
import os
import re
import shutil
import signal
from pathlib import Path
from typing import Any

from console import training
from nlp.artifact import METADATA_FILE, MODEL_FILE
from nlp.classifier import Classifier
from nlp.corpus import Example, load_seed_corpus
from nlp.labels import LABELS
from nlp.registry import ModelRegistry, eval_split_metrics, train_and_register
from nlp.training import train
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
        # the registry's refusals are said in Chinese with the English beside it, not passed through in English
        assert "没有版本为 nope 的模型" in refused.text and "no model &#39;nope&#39;" in refused.text
        confirmed = await client.post("/console/models/rollback", data={"csrf": csrf, "confirm": "1"})
        assert confirmed.status_code == 409
        assert "没有更早启用过的模型可以回滚" in confirmed.text and "no earlier promoted model" in confirmed.text
        assert "模型操作未能执行" not in refused.text + confirmed.text


async def test_training_with_nothing_new_to_learn_is_refused_with_the_version_it_would_copy(
        console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    default = console.context.classifier.version  # the seed corpus's model, and no report labelled by staff yet
    seed = ModelRegistry(console.context.models_dir).get(str(default))
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        refused = await client.post("/console/models/train", data={"csrf": csrf})
        assert refused.status_code == 409
        assert (f"没有可学习的新数据：版本 {default} 已用同样的 {seed.n_examples} 条样本和同样的设置训练过。"
                "请先在工单中确认或更正分类，再训练新版本") in refused.text
        assert "从未训练" in (await client.get("/console/models")).text  # no run started, none failed
    assert [info.version for info in ModelRegistry(console.context.models_dir).list()] == [default]
    assert not [entry for entry in await console.audit() if entry.action == "model.train"]


def _second_version(models_dir: Path) -> str:
    """A quick, weaker version beside the promoted default one: 12 seed examples of each label."""
    examples: list[Example] = []
    for label in LABELS:
        examples += [e for e in load_seed_corpus("train") if e.label == label][:12]
    return train_and_register(ModelRegistry(models_dir), examples, source="small").version


async def test_promoting_and_rolling_back_switch_the_serving_model_at_once(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    default = console.context.classifier.version
    assert default is not None
    newer = await asyncio.to_thread(_second_version, console.context.models_dir)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        assert f"<code>{default}</code>" in (await client.get("/console/models")).text
        promoted = await client.post("/console/models/promote", data={"csrf": csrf, "version": newer, "force": "1",
                                                                      "confirm": "1"})
        assert location(promoted) == "/console/models?done=promoted"
        assert console.context.classifier.version == newer
        page = (await client.get("/console/models?done=promoted")).text
        assert "服务中的模型" in page and f"<code>{newer}</code>" in page and "模型已启用。" in page
        rolled_back = await client.post("/console/models/rollback", data={"csrf": csrf, "confirm": "1"})
        assert location(rolled_back) == "/console/models?done=rolled_back"
        assert console.context.classifier.version == default
    assert [(entry.action, entry.detail) for entry in await console.audit() if entry.action.startswith("model.")] == [
        ("model.promote", {"version": newer, "forced": True}), ("model.rollback", {"version": default})]


ROW = re.compile(r'<tr><td class="nowrap">([\d.]+)–([\d.]+)</td><td class="num">(\d+)</td>\s*'
                 r'<td class="num">([^<]+)</td>\s*<td class="num">([^<]+)</td></tr>')
LANGUAGE = re.compile(r'<tr><td><span class="bi">[^<]*<span class="en">([^<]+)</span></span></td>'
                      r'<td class="num dim">n=(\d+)</td><td class="num">([^<]+)</td></tr>')
# What the registry stored of a version before issue 16 measured its calibration.
METRICS_BEFORE_CALIBRATION = ("macro_f1", "accuracy", "n", "split", "eval_fingerprint")


def _version_before_calibration(models_dir: Path) -> str:
    """A small model (12 seed examples of each label) saved with the metrics versions had before issue 16."""
    examples: list[Example] = []
    for label in LABELS:
        examples += [e for e in load_seed_corpus("train") if e.label == label][:12]
    trained = train(examples)
    metrics = eval_split_metrics(Classifier(trained.pipeline, version="candidate"))
    kept = {key: metrics[key] for key in METRICS_BEFORE_CALIBRATION}
    return ModelRegistry(models_dir).add(trained, kept, source="before issue 16").version


def _details(page: str, version: str) -> str:
    found = re.search(rf'<details class="calibration" id="calibration-{re.escape(version)}".*?</details>', page, re.S)
    assert found, f"no calibration of {version} on the page"
    return found.group(0)


def _three(value: float | None) -> str:
    return "—" if value is None else f"{value:.3f}"


def _share(value: Any) -> str:
    return f"{value * 100:.1f}%"


async def test_each_version_shows_its_calibration_and_triage_threshold_from_its_stored_metrics(
        console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    registry = ModelRegistry(console.context.models_dir)
    promoted = await asyncio.to_thread(registry.promoted)
    assert promoted is not None
    older = await asyncio.to_thread(_version_before_calibration, console.context.models_dir)
    async with console.client() as client:
        await console.login(client, "boss")
        page = (await client.get("/console/models")).text

    metrics = promoted.metrics
    current = _details(page, promoted.version)
    assert f'<b class="ece">{metrics["ece"]:.3f}</b>' in current
    assert ROW.findall(current) == [(f"{row['low']:.1f}", f"{row['high']:.1f}", str(row["n"]),
                                     _three(row["confidence"]), _three(row["accuracy"]))
                                    for row in metrics["reliability"]]
    assert sum(int(row[2]) for row in ROW.findall(current)) == metrics["n"]
    assert f'<b>{metrics["suggested_threshold"]:.2f}</b>' in current
    assert f'<dd class="triage-share">{_share(metrics["threshold_triage_share"])}</dd>' in current
    assert f'<dd class="auto-accuracy">{_share(metrics["threshold_precision"])}</dd>' in current
    assert metrics["threshold_rule"] in current
    assert ('<span class="bi">最低的阈值 t（步长 0.01）：t 及以上的报告至少 97% 分类正确，且 t 以下的报告不超过 20%'
            f'<span class="en">{metrics["threshold_rule"]}</span></span>') in current
    languages = {name: (int(n), accuracy) for name, n, accuracy in LANGUAGE.findall(current)}
    assert languages["English"] == (metrics["accuracy_by_language"]["en"]["n"],
                                    f'{metrics["accuracy_by_language"]["en"]["accuracy"]:.3f}')
    assert len(languages) == len(metrics["accuracy_by_language"])
    assert "not measured" not in current

    before = _details(page, older)
    assert before.count("not measured for this version") == 4  # ECE, reliability, threshold, languages
    assert not ROW.findall(before) and "triage-share" not in before


async def test_the_comparison_scores_calibration_and_threshold_of_both_versions(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    promoted = await asyncio.to_thread(ModelRegistry(console.context.models_dir).promoted)
    assert promoted is not None
    older = await asyncio.to_thread(_version_before_calibration, console.context.models_dir)
    async with console.client() as client:
        await console.login(client, "boss")
        page = (await client.get("/console/models", params={"a": older, "b": promoted.version})).text

    comparison = page[page.index('id="comparison"'):]
    # which side serves is marked (the columns said only A and B)
    heads = re.findall(r'<th class="num" title="([^"]+)">(.*?)</th>', comparison)
    assert [(version, " ".join(re.sub(r"<[^>]+>", " ", head).split())) for version, head in heads] == [
        (older, "A"), (promoted.version, "B 在用 serving")]
    ece = re.search(r'<th title="expected calibration error">ECE</th><td class="num">([\d.]+)</td>'
                    r'<td class="num">([\d.]+)</td>', comparison)
    assert ece is not None
    # the older version is scored on the evaluation split now; the promoted one as its registry entry says
    assert ece.group(2) == f'{promoted.metrics["ece"]:.3f}' and 0 < float(ece.group(1)) < 1
    triage = re.search(r'<th><span class="bi">送人工分拣<span class="en">Sent to Manual triage</span></span></th>'
                       r'<td class="num">([^<]+)</td><td class="num">([^<]+)</td>', comparison)
    assert triage is not None and triage.group(2) == _share(promoted.metrics["threshold_triage_share"])
    # each label's row names the label in both languages, as the language rows do
    label_rows = re.findall(r'<tr><td[^>]*>(.*?) <span class="dim">n=\d+</span></td>', comparison)
    named = [" ".join(re.sub(r"<[^>]+>", " ", cell).split()) for cell in label_rows]
    assert [name for name in named if name.startswith(tuple(zh for zh, _ in LABELS.values()))] == [
        f"{zh} {en}" for zh, en in LABELS.values()]


async def test_the_confirmation_says_when_the_gate_refuses_and_rollback_is_offered_only_with_a_target(
        console: ConsoleHarness) -> None:
    """Seen as an administrator: the confirmation of a much worse version offered 确认启用, which then answered 409
    (the gate refuses); the rollback button showed with only one version ever promoted."""
    await console.user("boss", StaffRole.ADMIN)
    default = console.context.classifier.version
    weaker = await asyncio.to_thread(_second_version, console.context.models_dir)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        page = (await client.get("/console/models")).text
        assert "回滚到上一个启用的版本" not in page
        asked = (await client.post("/console/models/promote", data={"csrf": csrf, "version": weaker})).text
        assert "质量门槛不允许启用此版本" in asked and f"more than 1 point below the promoted {default}" in asked
        gate_zh = rf"模型 {weaker} 在评估集上的 Macro-F1 为 [\d.]+，比当前启用的 {default}（[\d.]+）低 1 个百分点以上"
        assert re.search(gate_zh, asked)
        refused = await client.post("/console/models/promote", data={"csrf": csrf, "version": weaker, "confirm": "1"})
        assert refused.status_code == 409
        assert f"比当前启用的 {default}" in refused.text and f"below the promoted {default}" in refused.text
        assert "仍然强制启用" in asked and '<input type="hidden" name="force" value="1">' in asked
        forced = await client.post("/console/models/promote", data={"csrf": csrf, "version": weaker, "force": "1",
                                                                    "confirm": "1"})
        assert location(forced) == "/console/models?done=promoted"
        assert console.context.classifier.version == weaker
        after = (await client.get("/console/models")).text
        assert "回滚到上一个启用的版本" in after
        assert '<span class="tag warn"><span class="bi">强制<span class="en">forced</span></span></span>' in after


def _copy_of_promoted(models_dir: Path, version: str, **recorded: Any) -> Path:
    """A copy of the promoted model saved as `version`, its metadata changed by `recorded`; returns its directory."""
    source = ModelRegistry(models_dir).promoted()
    assert source is not None
    target = models_dir / version
    shutil.copytree(source.path, target)
    metadata = json.loads((target / METADATA_FILE).read_text(encoding="utf-8"))
    (target / METADATA_FILE).write_text(json.dumps({**metadata, "version": version, **recorded}), encoding="utf-8")
    return target


def _damaged_copy(models_dir: Path, version: str, *, promote: bool = False) -> Path:
    """A copy of the promoted model saved as `version` (promoted, if asked, while it is sound), whose model file
    is then cut short, as a full disk or an interrupted copy leaves it; returns that file."""
    registry = ModelRegistry(models_dir)
    target = _copy_of_promoted(models_dir, version)
    if promote:
        registry.promote(version, force=True, by="test")
    model_file = target / MODEL_FILE
    model_file.write_bytes(model_file.read_bytes()[:1000])
    return model_file


async def _promotion_refused(console: ConsoleHarness, version: str) -> str:
    """The administrator "boss" confirms promoting `version` (forced past the gate): the refusal's text."""
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        refused = await client.post("/console/models/promote", data={"csrf": csrf, "version": version, "force": "1",
                                                                     "confirm": "1"})
    assert refused.status_code == 409
    return html.unescape(refused.text)


async def test_a_damaged_model_is_refused_and_reported_in_both_languages(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    damaged = "20260101-000000-damage"
    await asyncio.to_thread(_damaged_copy, console.context.models_dir, damaged)
    text = await _promotion_refused(console, damaged)
    assert f"模型 {damaged} 的模型文件与记录的校验值不符，文件已损坏或被改动" in text
    assert f"model {damaged}: {MODEL_FILE} does not match the sha256 in {METADATA_FILE}" in text
    assert "模型操作未能执行" not in text


async def test_a_promoted_model_this_process_cannot_load_is_reported_in_both_languages(
        console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    serving = console.context.classifier.version
    damaged = "20260101-000000-damage"
    await asyncio.to_thread(_damaged_copy, console.context.models_dir, damaged, promote=True)
    await console.context.classifier.reload_if_changed()
    assert console.context.classifier.version == serving  # it keeps classifying with the sound one
    async with console.client() as client:
        await console.login(client, "boss")
        page = html.unescape((await client.get("/console/models")).text)
    alert = page[page.index('id="model-not-loaded"'):]
    alert = alert[:alert.index("</p>")]
    assert f"模型 {damaged} 的模型文件与记录的校验值不符，文件已损坏或被改动" in alert
    assert f"model {damaged}: {MODEL_FILE} does not match the sha256 in {METADATA_FILE}" in alert


async def test_a_model_saved_with_another_scikit_learn_is_refused_in_both_languages(console: ConsoleHarness) -> None:
    """A model copied from an installation with another scikit-learn (an upgrade, another server) cannot be served
    safely: promoting it is refused, and the page says why and what to do in Chinese as well as English."""
    await console.user("boss", StaffRole.ADMIN)
    other = "20260101-000000-othersk"
    serving = ModelRegistry(console.context.models_dir).promoted()
    assert serving is not None
    libraries = {**serving.library_versions, "scikit-learn": "1.5.2"}
    await asyncio.to_thread(_copy_of_promoted, console.context.models_dir, other, library_versions=libraries)
    text = await _promotion_refused(console, other)
    assert f"模型 {other} 是用 scikit-learn 1.5.2 保存的" in text
    assert f"model {other} was saved with scikit-learn 1.5.2" in text



async def _start_a_run(console: ConsoleHarness, client: Any, csrf: str) -> str:
    """Staff correct one ticket's label, then the administrator starts a training run on it; returns its id."""
    number = await console.case(description="区医院住院部护士长收了红包才安排床位，医保结算还多收了钱")
    corrected = await client.post(f"/console/case/{number}/correct-label", data={"csrf": csrf, "label": "medical"})
    assert corrected.status_code == 303
    started = await client.post("/console/models/train", data={"csrf": csrf})
    assert location(started) == "/console/models?done=training"
    return str(training.training_status(console.context.data_dir)["run_id"])


async def test_a_second_administrator_starting_a_run_is_told_in_both_languages_to_wait(
        console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    await console.user("deputy", StaffRole.ADMIN)
    async with console.client() as first, console.client() as second:
        run_id = await _start_a_run(console, first, await console.login(first, "boss"))
        refused = await second.post("/console/models/train", data={"csrf": await console.login(second, "deputy")})
        await training.wait_for_runs()
    text = html.unescape(refused.text)
    assert refused.status_code == 409
    assert f"另一次训练 {run_id} 刚刚开始，尚未结束；请等它完成后再训练" in text
    assert f"training run {run_id} started less than a minute ago and is still running; wait for it to finish" in text
    assert "模型操作未能执行" not in text
    assert [entry.detail for entry in await console.audit("model.train")] == [{"run": run_id}]


async def test_a_run_whose_process_was_killed_says_why_in_both_languages(console: ConsoleHarness) -> None:
    """The training process killed midway (out of memory, an operator's kill): the page says so in Chinese as well
    as English, and no half-saved version appears."""
    await console.user("boss", StaffRole.ADMIN)
    versions = [info.version for info in ModelRegistry(console.context.models_dir).list()]
    async with console.client() as client:
        await _start_a_run(console, client, await console.login(client, "boss"))
        for _ in range(1200):
            worker = training.training_status(console.context.data_dir).get("worker_pid")
            if worker is not None:
                break
            await asyncio.sleep(0.05)
        assert isinstance(worker, int), "the training process did not start"
        os.kill(worker, signal.SIGKILL)
        await training.wait_for_runs()
        page = html.unescape((await client.get("/console/models")).text)
    assert "训练进程意外结束（退出码 -9），可能是内存不足或被强行终止；新版本没有保存，请重新训练" in page
    assert "the training process ended with exit code -9" in page
    assert [info.version for info in ModelRegistry(console.context.models_dir).list()] == versions


def _small_version(models_dir: Path, per_label: int) -> str:
    """A quick version trained on `per_label` seed examples of each label (not promoted)."""
    examples: list[Example] = []
    for label in LABELS:
        examples += [e for e in load_seed_corpus("train") if e.label == label][:per_label]
    return train_and_register(ModelRegistry(models_dir), examples, source=f"small ({per_label})").version


async def _confirm(client: Any, asked: str) -> Any:
    """Press the confirmation page's button: its form's fields as the browser sends them."""
    form = asked[asked.index('<form method="post" action="/console/models/'):]
    form = form[:form.index("</form>")]
    action = re.search(r'action="([^"]+)"', form)
    assert action
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', form))
    return await client.post(action.group(1), data=fields)


async def test_a_confirmed_rollback_promotes_the_version_the_administrator_was_shown_or_none(
        console: ConsoleHarness) -> None:
    """Two administrators open the rollback confirmation at once, both shown "then: B". The first confirms; the
    second's confirmation must not roll back once more, to a version they were never shown."""
    await console.user("boss", StaffRole.ADMIN)
    await console.user("deputy", StaffRole.ADMIN)
    models_dir = console.context.models_dir
    shown = await asyncio.to_thread(_small_version, models_dir, 12)
    current = await asyncio.to_thread(_small_version, models_dir, 14)
    registry = ModelRegistry(models_dir)
    for version in (shown, current):
        await asyncio.to_thread(registry.promote, version, force=True)
    async with console.client() as first, console.client() as second:
        csrf_first, csrf_second = await console.login(first, "boss"), await console.login(second, "deputy")
        asked_first = (await first.post("/console/models/rollback", data={"csrf": csrf_first})).text
        asked_second = (await second.post("/console/models/rollback", data={"csrf": csrf_second})).text
        assert f"<code>{shown}</code>" in asked_first and f"<code>{shown}</code>" in asked_second
        assert location(await _confirm(first, asked_first)) == "/console/models?done=rolled_back"
        refused = await _confirm(second, asked_second)
    assert refused.status_code == 409
    text = html.unescape(refused.text)
    assert f"模型已经回滚到 {shown}" in text and f"the model was already rolled back to {shown}" in text
    assert console.context.classifier.version == shown
    assert ModelRegistry(models_dir).promoted() == ModelRegistry(models_dir).get(shown)


CORRECTED = [("社区卫生服务中心的医生让我们先交三百元才肯开医保报销单据", "medical"),
             ("区医院住院部护士长收了红包才安排床位", "medical"),
             ("学校老师强制学生买辅导书，每本收五十元", "education")]
DELTA = re.compile(r'<td class="num ?([a-z]*)">([+-]?[\d.]+|—)</td></tr>')


async def test_a_difference_too_small_to_show_is_shown_as_no_change(console: ConsoleHarness) -> None:
    """Retrained on three corrected tickets, the new version routes about as accurately: the B − A column showed a
    red '-0.0' (a change of -0.03 points, rounded away) as if it had got worse."""
    await console.user("boss", StaffRole.ADMIN)
    serving = str(console.context.classifier.version)
    extra = [Example(text=text, label=label, id=f"staff-{number}") for number, (text, label) in enumerate(CORRECTED)]
    retrained = await asyncio.to_thread(lambda: train_and_register(ModelRegistry(console.context.models_dir),
                                                                   extra_examples=extra).version)
    async with console.client() as client:
        await console.login(client, "boss")
        page = (await client.get("/console/models", params={"a": serving, "b": retrained})).text
    comparison = page[page.index('id="comparison"'):]
    deltas = DELTA.findall(comparison)
    assert len(deltas) > 10
    for colour, shown in deltas:
        if shown != "—" and float(shown) == 0:  # no change at the precision shown: neither worse nor better
            assert colour == "" and not shown.startswith("-"), deltas


async def test_a_damaged_registry_file_is_named_in_both_languages_and_no_run_is_recorded(
        console: ConsoleHarness) -> None:
    """registry.json cut short (a full disk, a hand edit): the models page, training, promoting and rolling back
    answered with an internal error, and training recorded a failed run 'could not read the staff-labelled
    reports'. They say what is wrong with which file, in Chinese as well as English."""
    await console.user("boss", StaffRole.ADMIN)
    serving = str(console.context.classifier.version)
    registry_file = console.context.models_dir / "registry.json"
    registry_file.write_text('{"history": ["2026', encoding="utf-8")
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        answers = [await client.get("/console/models"),
                   await client.post("/console/models/train", data={"csrf": csrf}),
                   await client.post("/console/models/rollback", data={"csrf": csrf}),
                   await client.post("/console/models/promote", data={"csrf": csrf, "version": serving})]
    for answer in answers:
        text = html.unescape(answer.text)
        assert answer.status_code == 409, text
        assert f"模型登记文件 {registry_file} 不是有效的 JSON" in text and "请修复或删除它" in text
        assert f"{registry_file} is not valid JSON" in text and "fix or remove it" in text
    assert training.training_status(console.context.data_dir)["state"] == "idle"


async def test_confirming_a_promotion_another_administrator_just_made_says_so_and_records_nothing(
        console: ConsoleHarness) -> None:
    """Both administrators open the promotion of the same new version; the second to confirm was told 模型已启用。
    and the audit log said they promoted it, though nothing changed."""
    await console.user("boss", StaffRole.ADMIN)
    await console.user("deputy", StaffRole.ADMIN)
    newer = await asyncio.to_thread(_small_version, console.context.models_dir, 12)
    async with console.client() as first, console.client() as second:
        csrf_first, csrf_second = await console.login(first, "boss"), await console.login(second, "deputy")
        fields = {"version": newer, "force": "1"}
        asked_first = (await first.post("/console/models/promote", data={"csrf": csrf_first, **fields})).text
        asked_second = (await second.post("/console/models/promote", data={"csrf": csrf_second, **fields})).text
        assert location(await _confirm(first, asked_first)) == "/console/models?done=promoted"
        again = await _confirm(second, asked_second)
    text = html.unescape(again.text)
    assert again.status_code == 409
    assert f"模型 {newer} 已经是启用的版本（由 boss 启用）；没有改动" in text
    assert f"model {newer} is already the promoted one (promoted by boss); nothing was changed" in text
    assert [entry.detail for entry in await console.audit("model.promote")] == [{"version": newer, "forced": True}]
    assert [event["action"] for event in ModelRegistry(console.context.models_dir).events()] == ["promote"] * 2


async def test_a_promoted_versions_threshold_that_is_not_the_citys_says_how_to_adopt_it(
        console: ConsoleHarness) -> None:
    """The promoted model suggested another triage threshold than the one routing uses, and nothing said so."""
    await console.user("boss", StaffRole.ADMIN)
    promoted = await asyncio.to_thread(ModelRegistry(console.context.models_dir).promoted)
    assert promoted is not None
    suggested = float(promoted.metrics["suggested_threshold"])
    routing = console.context.city.routing
    configured = routing.confidence_threshold
    try:
        routing.confidence_threshold = round(suggested + (0.1 if suggested < 0.5 else -0.1), 2)
        async with console.client() as client:
            await console.login(client, "boss")
            page = (await client.get("/console/models")).text
        assert page.count('class="threshold-differs warn"') == 1
        assert f"routing.confidence_threshold = {suggested:.2f}" in page
        routing.confidence_threshold = suggested
        async with console.client() as client:
            await console.login(client, "boss")
            assert "threshold-differs" not in (await client.get("/console/models")).text
    finally:
        routing.confidence_threshold = configured


async def test_the_promotion_confirmation_shows_what_would_change(console: ConsoleHarness) -> None:
    """Seen as an administrator deciding on a promotion: the confirmation showed only the two macro-F1 scores, not
    which categories would get worse, the calibration or how many more reports would go to manual triage."""
    from nlp.comparison import compare

    await console.user("boss", StaffRole.ADMIN)
    default = str(console.context.classifier.version)
    weaker = await asyncio.to_thread(_second_version, console.context.models_dir)
    expected = await asyncio.to_thread(compare, ModelRegistry(console.context.models_dir), default, weaker)
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        asked = (await client.post("/console/models/promote", data={"csrf": csrf, "version": weaker,
                                                                    "force": "1"})).text
    assert 'id="changes"' in asked
    changes = html.unescape(asked[asked.index('id="changes"'):])
    text = " ".join(re.sub(r"<[^>]+>", " ", changes).split())
    for key, digits in (("macro_f1", 3), ("accuracy", 3), ("ece", 3), ("threshold", 2)):
        row = expected[key]
        assert f"{row['a']:.{digits}f} → {row['b']:.{digits}f}" in text, key
    triage = expected["triage_share"]
    assert f"{_share(triage['a'])} → {_share(triage['b'])}" in text
    boundary = expected["boundary"]["macro_f1"]
    assert f"{boundary['a']:.3f} → {boundary['b']:.3f}" in text
    assert expected["drops"]
    for row in expected["drops"]:  # every category whose F1 drops, named in both languages, with its fall
        assert f"{row['name_zh']} {row['name_en']} {row['a']:.3f} → {row['b']:.3f} ({row['delta'] * 100:+.1f})" in text


async def test_the_rollback_confirmation_shows_what_would_change(console: ConsoleHarness) -> None:
    await console.user("boss", StaffRole.ADMIN)
    default = str(console.context.classifier.version)
    weaker = await asyncio.to_thread(_second_version, console.context.models_dir)
    registry = ModelRegistry(console.context.models_dir)
    await asyncio.to_thread(functools.partial(registry.promote, weaker, force=True, by="test"))
    async with console.client() as client:
        csrf = await console.login(client, "boss")
        asked = (await client.post("/console/models/rollback", data={"csrf": csrf})).text
    changes = html.unescape(asked[asked.index('id="changes"'):])
    text = " ".join(re.sub(r"<[^>]+>", " ", changes).split())
    assert f"{registry.get(weaker).macro_f1:.3f} → {registry.get(default).macro_f1:.3f}" in text
    assert "No category's F1 drops by more than 2 points." in text
