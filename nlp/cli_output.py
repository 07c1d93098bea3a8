"""What the classifier's commands print (`nlp.cli`): Rich tables of an evaluation and of two versions compared,
and help that names a flag without a type."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from typer import _click
from typer.core import TyperGroup, TyperOption

if TYPE_CHECKING:
    from nlp.evaluation import EvaluationReport


def stdout_console() -> Console:
    """Standard output; wide when it is not a terminal, so that versions and ids are never cut."""
    return Console(highlight=False, width=None if sys.stdout.isatty() else 200)


# --- help ---------------------------------------------------------------------------------------------------------
def _untype_flags(command: _click.Command, ctx: _click.Context) -> None:
    """Give every flag of `command` and of its subcommands (their `--help` included) an empty metavar.

    Typer 0.29's Rich help (`typer.rich_utils._print_options_panel`) prints `param.display_type_rich(ctx)` after
    every option, a flag's `<bool>` too (`--help <bool>`), where its plain help (`TyperOption.get_help_record`)
    leaves the type out for a flag (`is_flag`) or a counter; `display_type_rich` returns the metavar when there is
    one, so an empty metavar leaves the type column empty. A flag takes no value, so its metavar is shown nowhere
    else."""
    params = list(command.params)
    help_option = command.get_help_option(ctx)
    if help_option is not None:
        params.append(help_option)
    for param in params:
        if isinstance(param, TyperOption) and (param.is_flag or param.count) and param.metavar is None:
            param.metavar = ""
    for subcommand in getattr(command, "commands", {}).values():
        _untype_flags(subcommand, ctx)


class PlainFlagsGroup(TyperGroup):
    """A command group whose help names its flags, and its subcommands' flags, without a type (`--force`, not
    `--force <bool>`): `typer.Typer(cls=PlainFlagsGroup, …)`."""

    def parse_args(self, ctx: _click.Context, args: list[str]) -> list[str]:
        _untype_flags(self, ctx)
        return super().parse_args(ctx, args)


# --- model evaluate -----------------------------------------------------------------------------------------------
def share(value: object) -> str:
    return f"{value:.1%}" if isinstance(value, int | float) else "—"


def reliability_table(report: EvaluationReport) -> Table:
    table = Table(title=f"reliability of the confidence: expected calibration error {report.ece:.3f}")
    for column in ("confidence", "reports", "correct", "mean confidence", "gap"):
        table.add_column(column, justify="left" if column == "confidence" else "right")
    for row in report.reliability:
        gap = (f"{row.accuracy - row.confidence:+.3f}" if row.accuracy is not None and row.confidence is not None
               else "")
        table.add_row(f"{row.low:.1f}–{row.high:.1f}", str(row.n),
                      f"{row.accuracy:.3f}" if row.accuracy is not None else "·",
                      f"{row.confidence:.3f}" if row.confidence is not None else "·", gap)
    return table


def group_table(title: str, groups: dict[str, dict[str, float]]) -> Table:
    table = Table(title=title)
    for column in ("", "reports", "accuracy"):
        table.add_column(column, justify="left" if not column else "right")
    for name, values in groups.items():
        table.add_row(name, str(int(values["n"])), f"{values['accuracy']:.3f}")
    return table


def score_table(report: EvaluationReport) -> Table:
    from nlp.labels import display_name

    table = Table(title=f"{report.n} reports: macro-F1 {report.macro_f1:.4f}, accuracy {report.accuracy:.4f}")
    for column in ("label", "名称", "precision", "recall", "F1", "support"):
        table.add_column(column, justify="left" if column in ("label", "名称") else "right")
    for score in report.scores:
        table.add_row(score.label, display_name(score.label), f"{score.precision:.3f}", f"{score.recall:.3f}",
                      f"{score.f1:.3f}", str(score.support))
    return table


def confusion_table(report: EvaluationReport) -> Table:
    table = Table(title="confusion matrix (rows: true label, columns: predicted)")
    table.add_column("true \\ predicted")
    for number in range(1, len(report.labels) + 1):
        table.add_column(str(number), justify="right")
    for number, (label, row) in enumerate(zip(report.labels, report.confusion, strict=True), start=1):
        cells = [f"[bold]{count}[/bold]" if column == number - 1 else (str(count) if count else "·")
                 for column, count in enumerate(row)]
        table.add_row(f"{number} {label}", *cells)
    return table


def errors_table(report: EvaluationReport, limit: int) -> Table:
    table = Table(title=f"misclassified: {len(report.misclassified)} of {report.n} (most confident first)")
    for column in ("id", "true", "predicted", "conf.", "text"):
        table.add_column(column, overflow="ellipsis", no_wrap=column != "text", justify="right"
                         if column == "conf." else "left")
    for wrong in report.misclassified[:limit]:
        text = " ".join(wrong.example.text.split())
        table.add_row(wrong.example.id, wrong.example.label, wrong.predicted, f"{wrong.confidence:.2f}",
                      text[:120] + ("…" if len(text) > 120 else ""))
    return table


# --- model compare ------------------------------------------------------------------------------------------------
def _number(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "—"


def _signed(value: Any, digits: int = 4, percent: bool = False) -> str:
    if not isinstance(value, int | float):
        return "—"
    return f"{value * 100:+.1f} pt" if percent else f"{value:+.{digits}f}"


def comparison_tables(comparison: dict[str, Any]) -> list[Any]:
    """`nlp.comparison.compare` as what `qinglian model compare A B` prints: the summary on the evaluation split,
    the boundary split, F1 per label and the labels whose F1 drops."""
    summary = Table(title=f"evaluation split {comparison['split']} ({comparison['n']} reports)")
    for column in ("", "A", "B", "B − A"):
        summary.add_column(column, justify="left" if not column else "right")
    for name, key, digits in (("macro-F1", "macro_f1", 4), ("accuracy", "accuracy", 4),
                              ("ECE (calibration error, lower is better)", "ece", 4),
                              ("triage threshold (documented rule)", "threshold", 2)):
        row = comparison[key]
        summary.add_row(name, _number(row["a"], digits), _number(row["b"], digits), _signed(row["delta"], digits))
    for name, key in (("sent to triage at the threshold", "triage_share"),
                      ("accuracy of what is routed automatically", "auto_accuracy")):
        row = comparison[key]
        summary.add_row(name, share(row["a"]), share(row["b"]), _signed(row["delta"], percent=True))
    boundary = comparison["boundary"]
    edges = Table(title=f"boundary split ({boundary['n']} reports, never trained on)")
    for column in ("", "A", "B", "B − A"):
        edges.add_column(column, justify="left" if not column else "right")
    for name, key in (("macro-F1", "macro_f1"), ("accuracy", "accuracy")):
        row = boundary[key]
        edges.add_row(name, _number(row["a"], 4), _number(row["b"], 4), _signed(row["delta"]))
    row = boundary["triage_share"]
    edges.add_row("sent to triage at each one's threshold", share(row["a"]), share(row["b"]),
                  _signed(row["delta"], percent=True))
    labels = Table(title="F1 per label on the evaluation split")
    for column in ("label", "名称", "support", "A", "B", "B − A"):
        labels.add_column(column, justify="left" if column in ("label", "名称") else "right")
    for row in comparison["labels"]:
        labels.add_row(row["label"], row["name_zh"], str(row["support"]), _number(row["a"], 4), _number(row["b"], 4),
                       _signed(row["delta"]))
    return [summary, edges, labels]


def drops_line(comparison: dict[str, Any]) -> str:
    """The labels whose F1 falls from A to B by more than `nlp.comparison.F1_DROP`, in one line."""
    from nlp.comparison import F1_DROP

    drops = comparison["drops"]
    if not drops:
        return f"F1 drops: none (no label loses more than {F1_DROP * 100:.0f} points from A to B)"
    return "F1 drops from A to B: " + ", ".join(f"{row['label']} {row['delta']:+.4f}" for row in drops)
