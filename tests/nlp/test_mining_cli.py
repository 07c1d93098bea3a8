"""`hotspots` and `reply-quality` through Typer's runner: JSON lines in, JSON lines out, bad lines named."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from nlp.mining_cli import mining_app
from tests.nlp.test_hotspots import OTHERS, PLANT, SCHOOL
from tests.nlp.test_reply_quality import OFF_TOPIC, ON_TOPIC, REPORT

runner = CliRunner()
START = datetime(2024, 3, 4, 9, 0)


def _write(path: Path, rows: list[object]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row, ensure_ascii=False)) + "\n"
                            for row in rows), encoding="utf-8")
    return path


def _hot_rows() -> list[object]:
    rows: list[object] = []
    for group, items in (("plant", PLANT), ("school", SCHOOL), ("other", OTHERS)):
        for number, (title, text) in enumerate(items):
            rows.append({"id": f"{group}-{number}", "title": title, "text": text,
                         "time": (START + timedelta(days=number)).isoformat(), "likes": number,
                         "user": f"{group}-resident-{number}"})
    return rows


def test_hotspots_writes_one_line_per_hot_issue(tmp_path: Path) -> None:
    source = _write(tmp_path / "messages.jsonl", _hot_rows())
    result = runner.invoke(mining_app, ["hotspots", "--input", str(source), "--top", "2"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["rank"] for line in lines] == [1, 2]
    assert sorted(lines[0]) == ["description", "heat", "message_ids", "place_people", "rank", "time_range"]
    assert sorted(lines[0]["message_ids"]) == [f"plant-{number}" for number in range(6)]
    assert lines[0]["time_range"] == "2024-03-04至2024-03-09"
    assert sorted(lines[1]["message_ids"]) == [f"school-{number}" for number in range(4)]


def test_hotspots_writes_to_an_output_file(tmp_path: Path) -> None:
    source = _write(tmp_path / "messages.jsonl", _hot_rows())
    target = tmp_path / "hot.jsonl"
    result = runner.invoke(mining_app, ["hotspots", "--input", str(source), "--output", str(target)])
    assert result.exit_code == 0, result.output
    assert result.stdout == ""
    assert json.loads(target.read_text(encoding="utf-8").splitlines()[0])["rank"] == 1


@pytest.mark.parametrize(("bad_line", "message"), [
    ("{not json", "line 3: not JSON"),
    ('["a", "list"]', "line 3: expected a JSON object"),
    ('{"id": 9, "title": "t", "time": "2024-03-01"}', "line 3: missing field 'text'"),
    ('{"id": 9, "text": "t", "time": "yesterday"}', "line 3: field 'time' is not an ISO 8601 time"),
    ('{"id": 9, "text": "t", "time": "2024-03-01", "likes": -4}', "line 3: field 'likes' must be a whole number"),
    ('{"id": "plant-0", "text": "t", "time": "2024-03-01"}', "line 3: id 'plant-0' occurs twice"),
])
def test_hotspots_names_the_bad_line(tmp_path: Path, bad_line: str, message: str) -> None:
    rows = _hot_rows()
    rows.insert(2, bad_line)
    source = _write(tmp_path / "messages.jsonl", rows)
    result = runner.invoke(mining_app, ["hotspots", "--input", str(source)])
    assert result.exit_code == 2
    assert message in result.stderr
    assert "Traceback" not in result.output


def test_a_missing_file_is_one_line_and_exit_code_2(tmp_path: Path) -> None:
    result = runner.invoke(mining_app, ["hotspots", "--input", str(tmp_path / "absent.jsonl")])
    assert result.exit_code == 2
    assert result.stderr.startswith("qinglian: ")
    assert len(result.stderr.splitlines()) == 1


def test_reply_quality_scores_every_line(tmp_path: Path) -> None:
    rows: list[object] = [
        {"id": "a", "text": REPORT, "reply": ON_TOPIC, "time": "2024-03-04T10:00:00", "reply_time": "2024-03-08"},
        {"id": "b", "text": REPORT, "reply": OFF_TOPIC, "time": "2024-03-04T10:00:00",
         "reply_time": "2024-04-26T09:00:00"},
        {"id": 3, "title": "社保窗口", "text": REPORT, "reply": ON_TOPIC, "time": "2024-03-04T10:00:00"},
    ]
    source = _write(tmp_path / "replies.jsonl", rows)
    result = runner.invoke(mining_app, ["reply-quality", "--input", str(source)])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["id"] for line in lines] == ["a", "b", 3]
    assert sorted(lines[0]) == ["clarity", "completeness", "id", "reasons", "relevance", "score", "timeliness"]
    assert lines[0]["score"] > lines[1]["score"]
    assert lines[0]["timeliness"] == 1.0
    assert lines[1]["timeliness"] == 0.0
    assert lines[2]["timeliness"] is None
    assert any("社保窗口" in reason for reason in lines[1]["reasons"])


def test_reply_quality_names_the_bad_line(tmp_path: Path) -> None:
    rows: list[object] = [
        {"id": "a", "text": REPORT, "reply": ON_TOPIC, "time": "2024-03-04", "reply_time": "2024-03-08"},
        {"id": "b", "text": REPORT, "time": "2024-03-04"},
    ]
    source = _write(tmp_path / "replies.jsonl", rows)
    result = runner.invoke(mining_app, ["reply-quality", "--input", str(source)])
    assert result.exit_code == 2
    assert "line 2: missing field 'reply'" in result.stderr
    early = _write(tmp_path / "early.jsonl", [
        {"id": "c", "text": REPORT, "reply": ON_TOPIC, "time": "2024-03-04", "reply_time": "2024-03-01"}])
    result = runner.invoke(mining_app, ["reply-quality", "--input", str(early)])
    assert result.exit_code == 2
    assert "line 1: reply_time is before time" in result.stderr
