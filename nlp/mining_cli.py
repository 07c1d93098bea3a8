"""`qinglian hotspots` and `qinglian reply-quality`: hot issues and reply quality on JSON-lines files.

`mining_app` is a Typer app with the two commands (`hotspots_command`, `reply_quality_command`); the main CLI
mounts them as top-level commands with

    from nlp.mining_cli import hotspots_command, reply_quality_command
    app.command("hotspots")(hotspots_command)
    app.command("reply-quality")(reply_quality_command)

and `python -m nlp.mining_cli` runs `mining_app` on its own. Input is UTF-8 JSON lines ("-" reads standard input); blank
lines are skipped. Times are ISO 8601 ("2019-08-01T10:20:00", "2019-08-01"); a time with a zone is converted to
UTC and used without it, a time without one is used as it is. A bad line stops the command with one message naming
the line number and exit code 2, never a traceback.

    qinglian hotspots --input FILE.jsonl [--top N] [--output FILE]
        reads {"id", "title", "text", "time", "likes"?, "user"?, "label"?} lines (`user` or `author`: the
        resident, so one resident's repeated reports count once) and writes one line per hot issue:
        {"rank", "heat", "time_range": "YYYY-MM-DD至YYYY-MM-DD", "place_people", "description", "message_ids"}

    qinglian reply-quality --input FILE.jsonl [--output FILE] [--deadline-days N]
        reads {"id", "text", "reply", "time", "reply_time", "title"?} lines and writes one line each:
        {"id", "score", "relevance", "completeness", "clarity", "timeliness", "reasons"} (reasons in Chinese;
        timeliness is null when a time is missing)
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, TextIO

import typer

if TYPE_CHECKING:
    from nlp.hotspots import Message

mining_app = typer.Typer(help="Hot issues and reply quality.", no_args_is_help=True, pretty_exceptions_enable=False)


class InputError(Exception):
    """A line of the input file that cannot be used; the message names the line."""


@contextmanager
def _cli_errors() -> Iterator[None]:
    try:
        yield
    except (InputError, OSError, ValueError) as problem:
        typer.echo(f"qinglian: {problem}", err=True)
        raise typer.Exit(2) from None


@contextmanager
def _open_input(path: str) -> Iterator[TextIO]:
    if path == "-":
        yield sys.stdin
    else:
        with Path(path).open(encoding="utf-8") as handle:
            yield handle


@contextmanager
def _open_output(path: str | None) -> Iterator[TextIO]:
    if path is None or path == "-":
        yield sys.stdout
    else:
        with Path(path).open("w", encoding="utf-8") as handle:
            yield handle


def _records(handle: TextIO, name: str) -> Iterator[tuple[int, dict[str, Any]]]:
    for number, line in enumerate(handle, start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError as problem:
            raise InputError(f"{name}, line {number}: not JSON ({problem.msg})") from None
        if not isinstance(record, dict):
            raise InputError(f"{name}, line {number}: expected a JSON object")
        yield number, record


def _field(record: dict[str, Any], key: str, where: str, *, required: bool = True) -> Any:
    if key not in record or record[key] is None:
        if required:
            raise InputError(f"{where}: missing field '{key}'")
        return None
    return record[key]


def _text(record: dict[str, Any], key: str, where: str, *, required: bool = True) -> str:
    value = _field(record, key, where, required=required)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise InputError(f"{where}: field '{key}' must be a string")
    return value


def _id(record: dict[str, Any], where: str) -> int | str:
    value = _field(record, "id", where)
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise InputError(f"{where}: field 'id' must be a number or a string")
    return value


def _time(record: dict[str, Any], key: str, where: str, *, required: bool = True) -> datetime | None:
    value = _field(record, key, where, required=required)
    if value is None:
        return None
    if not isinstance(value, str):
        raise InputError(f"{where}: field '{key}' must be an ISO 8601 time string")
    try:
        moment = datetime.fromisoformat(value.strip())
    except ValueError:
        raise InputError(f"{where}: field '{key}' is not an ISO 8601 time: {value!r}") from None
    if moment.tzinfo is not None:
        moment = moment.astimezone(UTC).replace(tzinfo=None)
    return moment


def _count(record: dict[str, Any], key: str, where: str) -> int:
    value = record.get(key, 0)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise InputError(f"{where}: field '{key}' must be a whole number ≥ 0")
    return value


def read_messages(handle: TextIO, name: str = "input") -> list[Message]:
    """The hot-issue input lines as `Message`s (InputError naming the line for a bad one)."""
    from nlp.hotspots import Message

    messages = []
    seen: set[int | str] = set()
    for number, record in _records(handle, name):
        where = f"{name}, line {number}"
        identifier = _id(record, where)
        if identifier in seen:
            raise InputError(f"{where}: id {identifier!r} occurs twice")
        seen.add(identifier)
        author = record.get("user", record.get("author"))
        label = record.get("label")
        time = _time(record, "time", where)
        assert time is not None
        messages.append(Message(
            id=identifier,
            title=_text(record, "title", where, required=False),
            text=_text(record, "text", where),
            time=time,
            likes=_count(record, "likes", where),
            label=label if isinstance(label, str) else None,
            author=None if author is None else str(author),
        ))
    return messages


@mining_app.command("hotspots")
def hotspots_command(
    input_path: Annotated[str, typer.Option(
        "--input", help="JSON lines {id, title, text, time, likes?, user?}; - = stdin (without user each line "
                        "counts as another resident)")],
    top: Annotated[int, typer.Option("--top", min=1, help="How many hot issues")] = 5,
    output: Annotated[str | None, typer.Option("--output", help="Output file (default: standard output)")] = None,
) -> None:
    """Group the messages into problems about one place or group of people and print the hottest."""
    with _cli_errors():
        with _open_input(input_path) as handle:
            messages = read_messages(handle, input_path)
        if not messages:
            raise InputError(f"{input_path}: no messages")
        from nlp.hotspots import find_hotspots
        from nlp.tokenizer import warm_up

        warm_up()
        hotspots = find_hotspots(messages, top=top)
        with _open_output(output) as out:
            for hotspot in hotspots:
                out.write(json.dumps(hotspot.to_json(), ensure_ascii=False) + "\n")


@mining_app.command("reply-quality")
def reply_quality_command(
    input_path: Annotated[str, typer.Option("--input", help="JSON lines {id, text, reply, time, reply_time}")],
    output: Annotated[str | None, typer.Option("--output", help="Output file (default: standard output)")] = None,
    deadline_days: Annotated[int, typer.Option("--deadline-days", min=1, help="Deadline in working days")] = 15,
) -> None:
    """Score each reply for relevance, completeness, clarity and timeliness."""
    with _cli_errors():
        from nlp.reply_quality import score_reply
        from nlp.tokenizer import warm_up

        warm_up()
        with _open_input(input_path) as handle, _open_output(output) as out:
            for number, record in _records(handle, input_path):
                where = f"{input_path}, line {number}"
                identifier = _id(record, where)
                title = _text(record, "title", where, required=False)
                text = _text(record, "text", where)
                reply = _text(record, "reply", where)
                received = _time(record, "time", where, required=False)
                replied = _time(record, "reply_time", where, required=False)
                if received is not None and replied is not None and replied < received:
                    raise InputError(f"{where}: reply_time is before time")
                result = score_reply(f"{title}。{text}" if title else text, reply, received=received,
                                     replied=replied, deadline_working_days=deadline_days)
                out.write(json.dumps({"id": identifier, **result.to_json()}, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    mining_app()
