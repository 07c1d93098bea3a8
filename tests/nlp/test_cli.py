from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from nlp.cli import app, classify, model_app, operator_name
from nlp.corpus import load_seed_corpus
from nlp.errors import NothingNewToTrain
from nlp.registry import ModelInfo, ModelRegistry

runner = CliRunner()


def _json_lines(output: str) -> list[dict[str, object]]:
    return [json.loads(line) for line in output.splitlines() if line.strip()]


def _assert_clean_error(result: object, needle: str) -> None:
    assert result.exit_code == 2  # type: ignore[attr-defined]
    lines = result.stderr.strip().splitlines()  # type: ignore[attr-defined]
    assert len(lines) == 1 and lines[0].startswith("qinglian: ") and needle in lines[0], lines
    assert "Traceback" not in result.output  # type: ignore[attr-defined]


def test_mounting_is_two_lines() -> None:
    main = typer.Typer()
    main.command()(classify)
    main.add_typer(model_app)
    result = runner.invoke(main, ["--help"])
    assert result.exit_code == 0
    assert "classify" in result.output and "model" in result.output
    result = runner.invoke(main, ["model", "--help"])
    for command in ("train", "evaluate", "list", "promote", "rollback"):
        assert command in result.output


def test_classify_json_lines_and_plain_text(data_dir_with_model: tuple[Path, str]) -> None:
    lines = [
        json.dumps({"id": "举报-1", "text": "医院骨科医生收病人红包"}, ensure_ascii=False),
        "班主任周末办有偿补课班，不去的孩子被冷落",
        "",
        json.dumps({"text": "村主任把低保给了亲戚"}, ensure_ascii=False),
        '{"id": 9, "text": 42}',
        "{not json",
        "[1, 2]",
        "😀",
    ]
    result = runner.invoke(app, ["classify"], input="\n".join(lines) + "\n")
    assert result.exit_code == 0, result.output
    outputs = _json_lines(result.stdout)
    assert [o["id"] for o in outputs] == ["举报-1", 2, 4, 9, 6, 7, 8]
    assert [o.get("label") for o in outputs[:3]] == ["medical", "education", "village_affairs"]
    assert set(outputs[0]) == {"id", "label", "confidence", "top"}
    assert outputs[0]["confidence"] == outputs[0]["top"][0][1]  # type: ignore[index]
    assert len(outputs[0]["top"]) == 3  # type: ignore[arg-type]
    assert "error" in outputs[3] and "error" in outputs[4] and outputs[5]["label"] == "other"
    assert "2 malformed line(s)" in result.stderr
    assert '"id": "举报-1"' in result.stdout  # ensure_ascii=False


def test_classify_file_with_explain_and_model(data_dir_with_model: tuple[Path, str], tmp_path: Path) -> None:
    _, version = data_dir_with_model
    source = tmp_path / "in.jsonl"
    texts = [e.text for e in load_seed_corpus("eval")[:300]]
    source.write_text("\n".join(json.dumps({"id": n, "text": t}, ensure_ascii=False) for n, t in enumerate(texts)),
                      encoding="utf-8")
    result = runner.invoke(app, ["classify", "--explain", "--model", version, str(source)])
    assert result.exit_code == 0, result.output
    outputs = _json_lines(result.stdout)
    assert [o["id"] for o in outputs] == list(range(len(texts)))
    assert {key for o in outputs for key in o} == {"id", "label", "confidence", "top", "terms", "runner_up",
                                                    "contrast_terms", "model_version"}
    assert all(o["model_version"] == version for o in outputs)
    assert all(isinstance(o["terms"], list) and isinstance(o["contrast_terms"], list) for o in outputs)
    assert sum(1 for o in outputs if o["terms"]) >= 0.95 * len(outputs)
    assert any(o["runner_up"] is not None and o["contrast_terms"] for o in outputs)


def test_classify_trains_the_default_model_on_a_fresh_install(data_dir: Path,
                                                              saved_models: tuple[Path, ModelInfo]) -> None:
    result = runner.invoke(app, ["classify"], input="医保卡被药店拿去刷了日用品\n")
    assert result.exit_code == 0, result.output
    assert _json_lines(result.stdout)[0]["label"] == "medical"
    assert "no promoted classifier model: training the default model from the seed corpus" in result.stderr
    registry = ModelRegistry(data_dir / "models")
    promoted = registry.promoted()
    assert promoted is not None and [e["action"] for e in registry.events()] == ["promote"]
    # deterministic: the same data as the session's model, the same answers
    assert promoted.data_fingerprint == saved_models[1].data_fingerprint
    texts = [e.text for e in load_seed_corpus("eval")[:40]]
    session_model = ModelRegistry(saved_models[0]).load(saved_models[1].version)
    assert [t.top for t in registry.load_promoted().classify_many(texts)] == [
        t.top for t in session_model.classify_many(texts)]


def test_train_evaluate_promote_gate_rollback(data_dir_with_model: tuple[Path, str], tmp_path: Path) -> None:
    data_dir, first = data_dir_with_model

    # the session's model was trained on the seed corpus with the default settings: nothing new to learn
    result = runner.invoke(app, ["model", "train"])
    assert result.exit_code == 2
    assert (f"nothing new to learn: version {first} was trained on the same "
            f"{ModelRegistry(data_dir / 'models').get(first).n_examples} examples") in result.stderr
    assert [i.version for i in ModelRegistry(data_dir / "models").list()] == [first]

    result = runner.invoke(app, ["model", "train", "--again"])
    assert result.exit_code == 0, result.output
    second = next(i.version for i in ModelRegistry(data_dir / "models").list() if i.version != first)
    assert f"qinglian model promote {second}" in result.stdout
    assert "macro-F1" in result.stdout

    result = runner.invoke(app, ["model", "evaluate", "--model", second, "--max-errors", "3"])
    assert result.exit_code == 0, result.output
    for needle in ("precision", "recall", "macro-F1", "confusion matrix", "misclassified", "accuracy by language",
                   "reliability of the confidence: expected calibration error", "0.9–1.0",
                   "of the auto-routed reports correct", "of the reports to triage"):
        assert needle in result.stdout
    info = ModelRegistry(data_dir / "models").get(second)
    assert (f"confidence threshold by the rule (lowest t (0.01 grid) with ≥ 97% of the reports at or above t "
            f"correctly labelled and ≤ 20% below t): {info.metrics['suggested_threshold']:.2f}") in result.stdout

    [png] = (data_dir / "reports").glob(f"confusion-{second}-*.png")
    assert png.read_bytes()[:4] == b"\x89PNG"

    result = runner.invoke(app, ["model", "evaluate", "--model", second, "--split", "boundary", "--max-errors", "0"])
    assert result.exit_code == 0, result.output
    assert "boundary split (never trained on)" in result.stdout
    assert "accuracy by boundary rule" in result.stdout

    result = runner.invoke(app, ["model", "promote", second])
    assert result.exit_code == 0, result.output
    assert f"promoted {second}" in result.stdout
    events = ModelRegistry(data_dir / "models").events()
    result = runner.invoke(app, ["model", "promote", second])  # again: it says nothing changed, and nothing does
    assert result.exit_code == 0 and result.stdout.strip() == f"{second} is already the promoted model; nothing " \
        "was changed"
    assert ModelRegistry(data_dir / "models").events() == events

    small = tmp_path / "small.csv"  # three reports per label: a much worse model
    rows = [e for label in sorted({e.label for e in load_seed_corpus("train")})
            for e in [x for x in load_seed_corpus("train") if x.label == label][:3]]
    small.write_text("report,category\n" + "\n".join(f"\"{e.text.replace(chr(34), '')}\",{e.label}" for e in rows),
                     encoding="utf-8")
    result = runner.invoke(app, ["model", "train", "--data", str(small), "--text-field", "report",
                                 "--label-field", "category"])
    assert result.exit_code == 0, result.output
    # versions begin with the second they were made in, then the data's fingerprint: `max` is not "newest"
    [third] = [i.version for i in ModelRegistry(data_dir / "models").list() if i.version not in (first, second)]

    _assert_clean_error(runner.invoke(app, ["model", "promote", third]), "more than 1 point below")
    result = runner.invoke(app, ["model", "promote", third, "--force"])
    assert result.exit_code == 0 and "forced" in result.stdout

    result = runner.invoke(app, ["model", "list"])
    assert result.exit_code == 0
    assert all(version in result.stdout for version in (first, second, third))

    result = runner.invoke(app, ["model", "rollback"])
    assert result.exit_code == 0 and f"rolled back to {second}" in result.stdout
    result = runner.invoke(app, ["model", "rollback"])
    assert result.exit_code == 0 and f"rolled back to {first}" in result.stdout
    _assert_clean_error(runner.invoke(app, ["model", "rollback"]), "no earlier promoted model")


def test_evaluate_cross_validation_on_a_dataset(data_dir: Path, tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """The image's line names it by its absolute path, whatever directory the command ran in."""
    monkeypatch.chdir(tmp_path)
    dataset = tmp_path / "cv.jsonl"
    train = load_seed_corpus("train")
    examples = [e for e in train if e.label == "medical"][:30] + [e for e in train if e.label == "education"][:30]
    dataset.write_text("\n".join(json.dumps({"text": e.text, "label": e.label}, ensure_ascii=False)
                                 for e in examples), encoding="utf-8")
    png = tmp_path / "cv.png"
    result = runner.invoke(app, ["model", "evaluate", "--cv", "3", "--data", str(dataset), "--png", "cv.png"])
    assert result.exit_code == 0, result.output
    assert "3-fold cross-validation" in result.stdout
    assert f"confusion matrix image: {png.resolve()}\n" in result.stdout
    assert png.is_file()


@pytest.mark.parametrize(
    ("arguments", "needle"),
    [
        (["model", "promote", "20990101-000000-abcdef"], "no model"),
        (["model", "rollback"], "no earlier promoted model"),
        (["model", "train", "--data", "/nonexistent.jsonl"], "does not exist"),
        (["model", "evaluate", "--model", "nope"], "no model"),
        (["classify", "/nonexistent.txt"], "does not exist"),
        (["classify", "--model", "nope"], "no model"),
    ],
)
def test_errors_are_one_line_and_exit_code_2(data_dir: Path, arguments: list[str], needle: str) -> None:
    _assert_clean_error(runner.invoke(app, arguments, input=""), needle)


def test_list_on_an_empty_registry(data_dir: Path) -> None:
    result = runner.invoke(app, ["model", "list"])
    assert result.exit_code == 0
    assert "no models yet" in result.stdout


def test_a_promoted_version_that_cannot_be_read_is_said_not_hidden(data_dir_with_model: tuple[Path, str]) -> None:
    """`model list` left a damaged promoted version out of its table without a word on what serves."""
    data_dir, version = data_dir_with_model
    (data_dir / "models" / version / "metadata.json").write_text("{", encoding="utf-8")
    result = runner.invoke(app, ["model", "list"])
    assert result.exit_code == 1
    assert f"the promoted version {version} cannot be read" in result.output


# --- the administrator's life cycle through `qinglian` (the service's command, with its database) -----------------
STAFF_LABELLED = [
    ("社区卫生服务中心的医生让我们先交三百元才肯开医保报销单据", "medical", "slow_service"),
    ("区医院住院部护士长收了红包才安排床位，医保结算还多收了钱", "medical", "slow_service"),
    ("窗口办事员中午提前一小时离岗，群众排队没人办理业务", "slow_service", "slow_service"),
]


async def _deploy_with_staff_labels(pairs: list[tuple[str, str, str]]) -> Any:
    """The configured database (QINGLIAN_DATA_DIR's), migrated, holding cases staff labelled in the console:
    (text, label, predicted) — corrected when they differ, confirmed when not. Returns the Database."""
    from bot.config import load_settings
    from storage import staff_actions
    from storage.db import Database
    from storage.migrate import upgrade
    from storage.models import StaffRole
    from tests.storage.test_training_data import labelled_case

    settings = load_settings()
    await asyncio.to_thread(upgrade, settings.resolved_database_url, settings.resolved_keyring())
    database = Database.connect(settings.resolved_database_url, settings.resolved_keyring())
    async with database.sessionmaker.begin() as session:
        staff = await staff_actions.create_staff(session, username="admin", display_name="管理员",
                                                 role=StaffRole.ADMIN, password_hash="not-a-hash")
        for text, label, predicted in pairs:
            await labelled_case(session, staff, text, label, predicted=predicted, confidence=0.6)
    return database


async def _audited(database: Any) -> list[Any]:
    from storage import audit

    async with database.read_sessionmaker() as session:
        rows, _ = await audit.audit_log(session, page=1, per_page=50)
    return [entry for entry, _, _ in rows]


def test_train_from_staff_labels_on_the_command_line_uses_the_consoles_data(
        data_dir_with_model: tuple[Path, str]) -> None:
    """An administrator on a server without a browser could not retrain from the labels staff corrected."""
    from bot.cli import app as qinglian
    from console import training

    data_dir, first = data_dir_with_model
    database = asyncio.run(_deploy_with_staff_labels(STAFF_LABELLED))
    try:
        result = runner.invoke(qinglian, ["model", "train", "--staff-labels"])
        assert result.exit_code == 0, result.output
        assert "3 staff-labelled reports (2 corrected, 1 confirmed)" in result.stdout
        registry = ModelRegistry(data_dir / "models")
        new = registry.list()[-1]
        assert new.version != first and new.n_examples == len(load_seed_corpus("train")) + 3
        assert "3 staff-labelled reports" in new.source
        # what to do next: compare it with the version that serves, then promote it
        assert f"qinglian model compare {first} {new.version}" in result.stdout
        # the audit log says the run learnt from residents' reports staff labelled, and how many
        assert [entry.detail for entry in asyncio.run(_audited(database)) if entry.action == "model.train"] == [
            {"version": new.version, "examples": new.n_examples, "staff_labelled": 3,
             "via": operator_name()}]
        # the console would train on exactly these data: it says there is nothing new to learn
        with pytest.raises(NothingNewToTrain, match=new.version):
            asyncio.run(training.start_training(database, data_dir))
    finally:
        asyncio.run(database.dispose())


def test_train_from_staff_labels_when_staff_labelled_nothing_says_so(data_dir_with_model: tuple[Path, str]) -> None:
    from bot.cli import app as qinglian

    data_dir, _ = data_dir_with_model
    unreviewed = ("窗口办事员中午提前离岗，群众排队没人办理", "", "slow_service")
    database = asyncio.run(_deploy_with_staff_labels([unreviewed]))
    asyncio.run(database.dispose())
    result = runner.invoke(qinglian, ["model", "train", "--staff-labels"])
    _assert_clean_error(result, "no report whose label staff confirmed or corrected")
    assert len(ModelRegistry(data_dir / "models").list()) == 1  # nothing was trained


def test_train_from_staff_labels_without_the_service_database_says_so(data_dir_with_model: tuple[Path, str]) -> None:
    result = runner.invoke(app, ["model", "train", "--staff-labels"])  # this module alone: no database
    _assert_clean_error(result, "staff-labelled reports are in the service's database")


def test_compare_shows_two_versions_side_by_side_on_both_splits(data_dir_with_model: tuple[Path, str]) -> None:
    """There was no way to compare two versions from the command line before promoting one."""
    from nlp.comparison import compare
    from nlp.labels import LABELS
    from nlp.registry import train_and_register

    data_dir, first = data_dir_with_model
    registry = ModelRegistry(data_dir / "models")
    few = [e for label in LABELS for e in [x for x in load_seed_corpus("train") if x.label == label][:12]]
    second = train_and_register(registry, few, source="twelve per label").version
    result = runner.invoke(app, ["model", "compare", first, second])
    assert result.exit_code == 0, result.output
    expected = compare(registry, first, second)
    out = result.stdout
    assert first in out and second in out
    for key in ("macro_f1", "accuracy", "ece"):
        row = expected[key]
        assert f"{row['a']:.4f}" in out and f"{row['b']:.4f}" in out and f"{row['delta']:+.4f}" in out
    assert f"{expected['threshold']['a']:.2f}" in out and f"{expected['triage_share']['b']:.1%}" in out
    assert f"boundary split ({expected['boundary']['n']} reports" in out
    assert f"{expected['boundary']['macro_f1']['b']:.4f}" in out
    for row in expected["labels"]:
        assert row["label"] in out and f"{row['delta']:+.4f}" in out
    assert expected["drops"] and all(row["label"] in out.split("F1 drops")[1] for row in expected["drops"])


@pytest.mark.parametrize("pair", [["nope", "first"], ["first", "nope"]])
def test_compare_with_an_unknown_version_is_one_line_and_exit_code_2(data_dir_with_model: tuple[Path, str],
                                                                     pair: list[str]) -> None:
    _, first = data_dir_with_model
    result = runner.invoke(app, ["model", "compare", *[first if v == "first" else v for v in pair]])
    _assert_clean_error(result, "no model 'nope'")


@pytest.mark.parametrize("arguments", [["--help"], ["model", "promote", "--help"], ["model", "train", "--help"]])
def test_help_names_flags_without_a_type(arguments: list[str]) -> None:
    """`qinglian --help` showed `--help <bool>`, `--force <bool>`: as if the flags took a value."""
    from bot.cli import app as qinglian

    result = runner.invoke(qinglian, arguments, env={"COLUMNS": "160"})
    assert result.exit_code == 0, result.output
    assert "--help" in result.output and "Show this message and exit." in result.output
    assert "<bool>" not in result.output
    if "promote" in arguments:
        assert "--force" in result.output and "Promote even if the gate refuses." in result.output
    if "train" in arguments:
        assert "--text-field" in result.output and "<str>" in result.output  # an option with a value keeps its type
