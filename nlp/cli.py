"""`qinglian classify` and `qinglian model …`: the administrator's commands for the classifier.

Mounted into the main CLI (`bot/cli.py`) with

    app.command()(classify)
    app.add_typer(model_app)

and runnable on its own as `python -m nlp.cli`. Heavy imports (scikit-learn, jieba) happen inside the commands,
so `qinglian --help` stays fast. Errors print one line and exit with code 2.
"""

from __future__ import annotations

import getpass
import io
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from nlp.cli_output import (
    PlainFlagsGroup,
    comparison_tables,
    confusion_table,
    drops_line,
    errors_table,
    group_table,
    reliability_table,
    score_table,
    share,
    stdout_console,
)
from nlp.errors import NlpError, NothingNewToTrain
from nlp.settings import data_dir, models_dir, reports_dir

if TYPE_CHECKING:
    from nlp.artifact import ArtifactCipher
    from nlp.classifier import Classifier
    from nlp.corpus import Example
    from nlp.registry import ModelInfo

model_app = typer.Typer(name="model", help="Classifier models: train, evaluate, compare, list, promote, roll back.",
                        no_args_is_help=True, pretty_exceptions_enable=False, cls=PlainFlagsGroup)
app = typer.Typer(help="Qinglian classifier commands.", no_args_is_help=True, pretty_exceptions_enable=False,
                  cls=PlainFlagsGroup)

err_console = Console(stderr=True, highlight=False)
CLASSIFY_BATCH = 256

@dataclass(frozen=True)
class ModelKeys:
    """What the service lends the commands, through the command's context object (`ctx.obj`), which `qinglian`
    (bot.cli) fills: the cipher of the models (its key ring's), so that models are saved and read encrypted as the
    service does, and the audit log, into which a training run, a promotion and a rollback are written as the
    console writes its own, and the reports staff labelled (`staff_labels`: their (text, label) pairs and how many
    were {"confirmed": n, "corrected": m}, read from the service's database as the console reads them). Without it
    (this module run alone) models are saved in plain text, an encrypted one is refused, nothing is audited and
    there are no staff labels (there is no service database)."""

    cipher: Callable[[], ArtifactCipher]
    audit: Callable[[str, dict[str, Any]], None] | None = None
    staff_labels: Callable[[], tuple[list[tuple[str, str]], dict[str, int]]] | None = None


def operator_name() -> str:
    """Who ran a command, as the models page names them: the operating-system account."""
    try:
        return f"command line ({getpass.getuser()})"
    except (KeyError, OSError):  # no name for the process's user id (a container's arbitrary uid)
        return "command line"


def _audit(ctx: typer.Context, action: str, detail: dict[str, Any]) -> None:
    """Into the service's audit log, with who ran the command (`via`)."""
    keys = ctx.find_object(ModelKeys)
    if keys is not None and keys.audit is not None:
        keys.audit(action, {**detail, "via": operator_name()})


@contextmanager
def _cli_errors() -> Iterator[None]:
    """Known failures become one line on stderr and exit code 2, never a traceback."""
    try:
        yield
    except (NlpError, OSError, ValueError) as problem:
        message = str(problem) or problem.__class__.__name__
        typer.echo(f"qinglian: {message}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def _progress(steps: Sequence[str], description: str) -> Iterator[Any]:
    """A Rich progress bar on stderr advanced by known step messages; other messages print above it."""
    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), TextColumn("{task.fields[step]}"),
                  TimeElapsedColumn(), console=err_console, transient=True) as bar:
        task = bar.add_task(description, total=len(steps), step="")
        known = list(steps)

        def report(message: str) -> None:
            if message in known:
                bar.update(task, completed=known.index(message), step=message)
            else:
                bar.console.print(message, markup=False)

        yield report
        bar.update(task, completed=len(steps), step="done")


def _registry(ctx: typer.Context) -> Any:
    from nlp.registry import ModelRegistry

    keys = ctx.find_object(ModelKeys)
    return ModelRegistry(models_dir(), keys.cipher() if keys is not None else None)


def _warm_up() -> None:
    from nlp.tokenizer import warm_up

    warm_up(data_dir())


def _load_classifier(ctx: typer.Context, version: str | None) -> Classifier:
    """The given version, or the promoted one (training the default model on a fresh install)."""
    from nlp.registry import ensure_default_model

    registry = _registry(ctx)
    if version:
        return registry.load(version)  # type: ignore[no-any-return]
    if registry.promoted() is None:
        _warm_up()
        from nlp.registry import SAVING_STEP, SCORING_STEP
        from nlp.training import TRAIN_STEPS

        with _progress([*TRAIN_STEPS, SCORING_STEP, SAVING_STEP], "default model") as report:
            ensure_default_model(data_dir(), progress=report, cipher=registry.cipher)
    return registry.load_promoted()  # type: ignore[no-any-return]


# --- classify -----------------------------------------------------------------------------------------------------
def _parse_line(line: str, number: int) -> tuple[Any, str | None, str | None]:
    """(id, text, error) of one input line: a JSON object with "text" (and "id"), or plain text."""
    stripped = line.strip().lstrip("\ufeff")
    if not stripped.startswith("{"):
        return number, stripped, None
    try:
        record = json.loads(stripped)
    except json.JSONDecodeError as problem:
        return number, None, f"line {number}: not valid JSON ({problem.msg})"
    if not isinstance(record, dict):
        return number, None, f"line {number}: not a JSON object"
    identifier = record.get("id", number)
    text = record.get("text")
    if not isinstance(text, str):
        return identifier, None, f'line {number}: needs a string field "text"'
    return identifier, text, None


def _input_lines(source: str) -> Iterator[str]:
    if source == "-":
        stream: TextIO = sys.stdin
        buffer = getattr(sys.stdin, "buffer", None)
        if buffer is not None:
            stream = io.TextIOWrapper(buffer, encoding="utf-8", errors="replace")
        yield from stream
        return
    with Path(source).open(encoding="utf-8", errors="replace") as handle:
        yield from handle


def _output_stream() -> TextIO:
    stream = sys.stdout
    reconfigure = getattr(stream, "reconfigure", None)
    if reconfigure is not None and (stream.encoding or "").lower().replace("-", "") != "utf8":
        try:
            reconfigure(encoding="utf-8")
        except (ValueError, OSError):
            pass
    return stream


def _write_results(out: TextIO, classifier: Classifier, pending: list[tuple[Any, str]], explain: bool) -> None:
    tags = classifier.classify_many([text for _, text in pending], terms=explain)
    for (identifier, _), tag in zip(pending, tags, strict=True):
        result: dict[str, Any] = {
            "id": identifier,
            "label": tag.label,
            "confidence": round(tag.confidence, 4),
            "top": [[label, round(score, 4)] for label, score in tag.top],
        }
        if explain:
            result["terms"] = tag.terms
            result["runner_up"] = tag.runner_up
            result["contrast_terms"] = tag.contrast_terms
            result["model_version"] = tag.model_version
        out.write(json.dumps(result, ensure_ascii=False) + "\n")


def classify(
    ctx: typer.Context,
    source: Annotated[str, typer.Argument(metavar="[FILE|-]", help="JSON lines {\"id\", \"text\"} or plain text "
                                          "lines; - or nothing reads standard input.")] = "-",
    model: Annotated[str | None, typer.Option("--model", help="Model version (default: the promoted one).")] = None,
    explain: Annotated[bool, typer.Option("--explain", help="Add the key terms, the close runner-up with the "
                                          "phrases that decided against it, and the model version.")] = False,
) -> None:
    """Classify reports: one JSON line out per input line ({"id", "label", "confidence", "top"})."""
    with _cli_errors():
        if source != "-" and not Path(source).is_file():
            raise NlpError(f"input file {source} does not exist")
        classifier = _load_classifier(ctx, model)
        _warm_up()
        out = _output_stream()
        batch = 1 if source == "-" else CLASSIFY_BATCH  # standard input may be interactive: answer each line
        pending: list[tuple[Any, str]] = []
        errors = 0
        try:
            for number, line in enumerate(_input_lines(source), start=1):
                if not line.strip():
                    continue
                identifier, text, error = _parse_line(line, number)
                if error is not None or text is None:
                    _write_results(out, classifier, pending, explain)
                    pending.clear()
                    out.write(json.dumps({"id": identifier, "error": error}, ensure_ascii=False) + "\n")
                    errors += 1
                    continue
                pending.append((identifier, text))
                if len(pending) >= batch:
                    _write_results(out, classifier, pending, explain)
                    pending.clear()
                    out.flush()
            _write_results(out, classifier, pending, explain)
            out.flush()
        except BrokenPipeError:  # the reader went away (`| head`): stop quietly
            sys.stdout = io.TextIOWrapper(io.BytesIO())
            return
        if errors:
            typer.echo(f"qinglian: {errors} malformed line(s) answered with an \"error\" field", err=True)


# --- model train ------------------------------------------------------------------------------------------------
def _staff_labelled(ctx: typer.Context) -> tuple[list[Example], str]:
    """The reports staff labelled in the console, as its "train now" adds them (`nlp.registry.staff_examples`);
    and how many of each kind. Refused when there are none, or no service database to read them from."""
    from nlp.registry import staff_examples

    keys = ctx.find_object(ModelKeys)
    if keys is None or keys.staff_labels is None:
        raise NlpError("the staff-labelled reports are in the service's database: run `qinglian model train "
                       "--staff-labels` (not this module alone)")
    pairs, counts = keys.staff_labels()
    examples = staff_examples(pairs)
    if not examples:
        raise NlpError("no report whose label staff confirmed or corrected is in the database yet: confirm or "
                       "correct labels on the console's tickets (or its \"needs labelling\" list) first")
    skipped = len(pairs) - len(examples)
    said = (f"{len(examples)} staff-labelled reports ({counts.get('corrected', 0)} corrected, "
            f"{counts.get('confirmed', 0)} confirmed)"
            + (f"; {skipped} with a label not in the taxonomy left out" if skipped else ""))
    err_console.print(f"adding {said} to the training data", markup=False)
    return examples, said


def _load_examples(data: Sequence[Path], text_field: str, label_field: str) -> list[Example]:
    from nlp.corpus import load_dataset

    examples: list[Example] = []
    for path in data:
        examples.extend(load_dataset(path, text_field=text_field, label_field=label_field))
    return examples


@model_app.command("train")
def train_command(
    ctx: typer.Context,
    data: Annotated[list[Path] | None, typer.Option("--data", help="JSONL or CSV dataset (repeatable). Default: "
                                                    "the seed corpus's training split.")] = None,
    text_field: Annotated[str, typer.Option("--text-field", help="Field holding the text.")] = "text",
    label_field: Annotated[str, typer.Option("--label-field", help="Field holding the label.")] = "label",
    with_seed: Annotated[bool, typer.Option("--with-seed", help="Also train on the seed corpus's training "
                                            "split when --data is given.")] = False,
    again: Annotated[bool, typer.Option("--again", help="Train even if a saved version was trained on the same "
                                        "data with the same settings (the new one is then its copy).")] = False,
    staff_labels: Annotated[bool, typer.Option("--staff-labels", help="Also train on the reports whose label staff "
                                               "confirmed or corrected (from the service's database), as the "
                                               "console's \"train now\" does.")] = False,
) -> None:
    """Train a new model version (saved, not promoted) and score it on the fixed evaluation split.

    Refused when a saved version was trained on exactly this data with the same settings and libraries."""
    with _cli_errors():
        from nlp.corpus import load_seed_corpus
        from nlp.registry import SAVING_STEP, SCORING_STEP, train_and_register
        from nlp.training import TRAIN_STEPS

        if data:
            examples = _load_examples(data, text_field, label_field)
            if with_seed:
                examples += load_seed_corpus("train")
            source = ", ".join(str(path) for path in data) + (" + seed corpus (train split)" if with_seed else "")
        else:
            examples = load_seed_corpus("train")
            source = "seed corpus (train split)"
        extra, said = _staff_labelled(ctx) if staff_labels else ([], "")
        if extra:
            source += f" + {len(extra)} staff-labelled reports, command line"
        _warm_up()
        with _progress([*TRAIN_STEPS, SCORING_STEP, SAVING_STEP], "training") as report:
            try:
                info = train_and_register(_registry(ctx), examples, extra_examples=extra, progress=report,
                                          source=source, again=again)
            except NothingNewToTrain as same:  # what the command line can do that the console cannot
                raise NlpError(f"{same} (or train again anyway with --again)") from None
        _audit(ctx, "model.train", {"version": info.version, "examples": info.n_examples,
                                    **({"staff_labelled": len(extra)} if extra else {})})
        console = stdout_console()
        if extra:
            console.print(f"trained with {said}", markup=False)
        console.print(f"model [bold]{info.version}[/bold]: {info.n_examples} examples, {len(info.labels)} labels, "
                      f"trained in {info.training_seconds:.1f} s")
        selection = info.selection
        if selection:
            console.print(f"chosen from the training data: {selection['parameter']}={selection['chosen']} (median "
                          f"report {selection['median_chars']:.0f} characters, opening block from "
                          f"{selection['threshold_chars']})")
        if info.macro_f1 is not None:
            console.print(f"evaluation split ({info.metrics.get('n')} reports): macro-F1 {info.macro_f1:.4f}, "
                          f"accuracy {info.accuracy:.4f}, ECE {info.metrics.get('ece')}; suggested confidence "
                          f"threshold {info.metrics.get('suggested_threshold')} "
                          f"({share(info.metrics.get('threshold_triage_share'))} to triage)")
            boundary = info.metrics.get("boundary") or {}
            if boundary:
                console.print(f"boundary split ({boundary.get('n')} reports): macro-F1 {boundary.get('macro_f1')}, "
                              f"accuracy {boundary.get('accuracy')}")
        else:
            console.print("not scored on the evaluation split (its labels are not the taxonomy's)")
        promoted = _registry(ctx).promoted_version()
        if promoted is not None and promoted != info.version:
            console.print(f"compare it with the promoted version: qinglian model compare {promoted} {info.version}",
                          markup=False)
        console.print(f"promote it with: qinglian model promote {info.version}", markup=False)


# --- model evaluate ---------------------------------------------------------------------------------------------
@model_app.command("evaluate")
def evaluate_command(
    ctx: typer.Context,
    model: Annotated[str | None, typer.Option("--model", help="Model version (default: the promoted one).")] = None,
    data: Annotated[Path | None, typer.Option("--data", help="JSONL or CSV dataset (default: the evaluation "
                                              "split; with --cv, the seed corpus's training split).")] = None,
    split: Annotated[str, typer.Option("--split", help="Without --data: eval (the evaluation split) or boundary "
                                       "(the boundary split).")] = "eval",
    cv: Annotated[int | None, typer.Option("--cv", min=2, max=20, help="Cross-validate a fresh pipeline with K "
                                           "stratified folds (seed 42) instead of scoring a saved model.")] = None,
    text_field: Annotated[str, typer.Option("--text-field")] = "text",
    label_field: Annotated[str, typer.Option("--label-field")] = "label",
    png: Annotated[Path | None, typer.Option("--png", help="Where to write the confusion matrix image.")] = None,
    max_errors: Annotated[int, typer.Option("--max-errors", min=0, help="Misclassified examples to list.")] = 20,
) -> None:
    """Per-label precision/recall/F1, macro-F1, accuracy, confusion matrix (terminal and PNG), misclassified."""
    with _cli_errors():
        from nlp.corpus import load_boundary_split, load_seed_corpus
        from nlp.evaluation import THRESHOLD_RULE, cross_validate, evaluate_classifier, plot_confusion
        from nlp.training import TrainingParams

        if split not in ("eval", "boundary"):
            raise NlpError(f"--split must be eval or boundary, not {split!r}")
        if data is not None:
            examples = _load_examples([data], text_field, label_field)
            data_name = str(data)
        elif cv:
            examples, data_name = load_seed_corpus("train"), "seed corpus, training split"
        elif split == "boundary":
            examples, data_name = load_boundary_split(), "boundary split (never trained on)"
        else:
            examples, data_name = load_seed_corpus("eval"), "seed corpus, evaluation split"
        _warm_up()
        if cv:
            params = TrainingParams()
            if model:
                stored = _registry(ctx).get(model).params
                params = TrainingParams.from_mapping({k: v for k, v in stored.items() if k != "calibration_folds"})
            steps = [f"fold {number} of {cv}" for number in range(1, cv + 1)]
            with _progress(steps, "cross-validating") as report_step:
                report = cross_validate(examples, folds=cv, seed=42, params=params, progress=report_step)
            subject = f"{cv}-fold cross-validation" + (f" with the parameters of {model}" if model else "")
            stem = f"cv{cv}"
        else:
            classifier = _load_classifier(ctx, model)
            report = evaluate_classifier(classifier, examples)
            subject = f"model {classifier.version}"
            stem = classifier.version
        console = stdout_console()
        console.print(f"{subject} on {data_name}", markup=False)
        console.print(score_table(report))
        console.print(confusion_table(report))
        if report.accuracy_by_language:
            console.print(group_table("accuracy by language", report.accuracy_by_language))
        if report.accuracy_by_rule:
            console.print(group_table("accuracy by boundary rule (taxonomy.md)", report.accuracy_by_rule))
        console.print(reliability_table(report))
        if report.threshold is not None:
            choice = report.threshold
            console.print(f"confidence threshold by the rule ({THRESHOLD_RULE}): {choice.threshold:.2f}",
                          markup=False)
            console.print(f"  → {choice.precision:.1%} of the auto-routed reports correct, {choice.triage_share:.1%} "
                          "of the reports to triage for low confidence"
                          + ("" if choice.rule_met else " (rule not met)"), markup=False)
        if report.misclassified and max_errors:
            console.print(errors_table(report, max_errors))
            if len(report.misclassified) > max_errors:
                console.print(f"… and {len(report.misclassified) - max_errors} more (--max-errors)")
        stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
        target = png or reports_dir() / f"confusion-{stem}-{stamp}.png"
        plot_confusion(report, target, f"{subject}: macro-F1 {report.macro_f1:.3f}")
        console.print(f"confusion matrix image: {target.resolve()}", markup=False, soft_wrap=True)


# --- model compare ----------------------------------------------------------------------------------------------
@model_app.command("compare")
def compare_command(
    ctx: typer.Context,
    version_a: Annotated[str, typer.Argument(metavar="A", help="One version (the promoted one, usually).")],
    version_b: Annotated[str, typer.Argument(metavar="B", help="The other (the candidate); differences are B − A.")],
) -> None:
    """Two versions side by side on the fixed evaluation split and the boundary split: macro-F1, accuracy, ECE,
    triage threshold and share sent to triage, F1 per label with the difference, the labels whose F1 drops."""
    with _cli_errors():
        from nlp.comparison import compare

        registry = _registry(ctx)
        for version in (version_a, version_b):
            registry.get(version)  # an unknown version is said before anything is loaded
        _warm_up()
        comparison = compare(registry, version_a, version_b)
        console = stdout_console()
        for side, version in (("A", comparison["a"]), ("B", comparison["b"])):
            console.print(f"{side}: {version['version']}" + (" (promoted)" if version["promoted"] else "")
                          + f" — {version['n_examples']} examples, {version['source']}", markup=False)
        for table in comparison_tables(comparison):
            console.print(table)
        console.print(drops_line(comparison), markup=False)


# --- model list / promote / rollback ----------------------------------------------------------------------------
def _score(value: float | None) -> str:
    return f"{value:.4f}" if value is not None else "—"


@model_app.command("list")
def list_command(ctx: typer.Context) -> None:
    """Saved models, oldest first; ● marks the promoted one."""
    with _cli_errors():
        registry = _registry(ctx)
        infos: list[ModelInfo] = registry.list()
        promoted = registry.promoted_version()
        console = stdout_console()
        if not infos and promoted is None:
            console.print("no models yet: `qinglian model train` (or `qinglian serve` trains the default one)",
                          markup=False)
            return
        table = Table(title=f"models in {models_dir()}")
        for column in ("", "version", "created (UTC)", "examples", "macro-F1", "accuracy", "threshold", "source"):
            table.add_column(column, justify="right" if column in ("examples", "macro-F1", "accuracy") else "left")
        for info in infos:
            threshold = info.metrics.get("suggested_threshold")
            table.add_row("●" if info.promoted else "", info.version, f"{info.created_at:%Y-%m-%d %H:%M:%S}",
                          str(info.n_examples), _score(info.macro_f1), _score(info.accuracy),
                          f"{threshold:.2f}" if isinstance(threshold, float | int) else "—", info.source)
        console.print(table)
        console.print("macro-F1 and accuracy on the fixed evaluation split of the seed corpus", markup=False)
        if promoted is not None and not any(info.promoted for info in infos):
            # its metadata could not be read (the warning above says why): a service starting now cannot load it
            typer.echo(f"qinglian: the promoted version {promoted} cannot be read (not listed above); promote a "
                       "listed one with `qinglian model promote VERSION`", err=True)
            raise typer.Exit(1)


@model_app.command("promote")
def promote_command(
    ctx: typer.Context,
    version: Annotated[str, typer.Argument(help="The model version to promote.")],
    force: Annotated[bool, typer.Option("--force", help="Promote even if the gate refuses.")] = False,
) -> None:
    """Make a model the one the service uses; refuses one > 1 macro-F1 point worse unless --force."""
    with _cli_errors():
        registry = _registry(ctx)
        if not registry.promote(version, force=force, by=operator_name()):
            typer.echo(f"{version} is already the promoted model; nothing was changed")
            return
        info = registry.get(version)
        _audit(ctx, "model.promote", {"version": info.version, "forced": force})
        typer.echo(f"promoted {info.version} (macro-F1 {_score(info.macro_f1)} on the evaluation split)"
                   + (" — forced" if force else ""))


@model_app.command("rollback")
def rollback_command(ctx: typer.Context) -> None:
    """Go back to the previously promoted model."""
    with _cli_errors():
        info = _registry(ctx).rollback(by=operator_name())
        _audit(ctx, "model.rollback", {"version": info.version})
        typer.echo(f"rolled back to {info.version} (macro-F1 {_score(info.macro_f1)} on the evaluation split)")


app.command()(classify)
app.add_typer(model_app)

if __name__ == "__main__":
    app()
