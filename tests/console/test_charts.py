"""The console's charts as a supervisor sees them: bars as long as their values, sparklines of the hot issues'
weeks, line charts with readable axes, colours per series and thinned week labels; every text escaped (or
shortened with its full text in a tooltip), and empty or zero data drawn without a failure."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date
from itertools import pairwise

import pytest

from console import charts

SVG = "{http://www.w3.org/2000/svg}"


def _bars(root: ET.Element) -> list[ET.Element]:
    """The value bars of a bar chart (every rect but the white background)."""
    return [rect for rect in root.iter(f"{SVG}rect") if rect.get("fill") != "#ffffff"]


def _texts(root: ET.Element) -> list[str]:
    return [element.text or "" for element in root.iter(f"{SVG}text")]


# --- text helpers -------------------------------------------------------------------------------------------


def test_xml_safe_escapes_markup_and_quotes_and_drops_what_xml_forbids() -> None:
    assert charts.xml_safe("a\x00b\x07c\td\ne\ud800f😀\ufffe'\"<&>") == (
        "abc\td\nef😀&#x27;&quot;&lt;&amp;&gt;")
    assert charts.xml_safe(42) == "42"
    assert charts.xml_safe("") == ""


def test_a_cjk_character_is_as_wide_as_the_font_and_a_latin_one_six_tenths() -> None:
    assert charts.text_width("清廉", 10) == 20
    assert charts.text_width("ab", 10) == pytest.approx(12)
    assert charts.text_width("ＡＢ", 10) == 20  # full-width Latin letters count as wide
    assert charts.text_width("芙蓉 7", 10) == pytest.approx(20 + 6 + 6)
    assert charts.text_width("", 13) == 0


def test_fit_keeps_a_text_that_fits_and_shortens_one_that_does_not_with_an_ellipsis() -> None:
    assert charts.fit("清廉大厅", 52, 13) == "清廉大厅"  # exactly 4 × 13
    assert charts.fit("清廉大厅", 51.9, 13) == "清廉大…"
    shortened = charts.fit("Clean Hall supervision", 60, 10)
    assert shortened == "Clean Hal…" and charts.text_width(shortened, 10) <= 60


# --- bar charts ---------------------------------------------------------------------------------------------


def test_bars_are_as_long_as_their_values_and_start_at_one_edge() -> None:
    root = ET.fromstring(charts.bar_chart_svg("按队列", [("甲", 10), ("乙", 5), ("丙", 2)]))
    bars = _bars(root)
    widths = [float(bar.attrib["width"]) for bar in bars]
    assert widths[0] > 100
    assert widths[1] == pytest.approx(widths[0] / 2, abs=0.1) and widths[2] == pytest.approx(widths[0] / 5, abs=0.1)
    assert len({bar.attrib["x"] for bar in bars}) == 1
    # each value is written just right of its bar, and the longest bar leaves room for its value in the chart
    values = {text.text: float(text.attrib["x"]) for text in root.iter(f"{SVG}text") if text.text in ("10", "5", "2")}
    left = float(bars[0].attrib["x"])
    assert [values[v] > left + width for v, width in zip(("10", "5", "2"), widths, strict=True)] == [True] * 3
    assert values["10"] + charts.text_width("10", 13) <= float(root.attrib["width"])


def test_rows_do_not_overlap_and_the_chart_grows_with_them() -> None:
    root = ET.fromstring(charts.bar_chart_svg("按区县", [(f"区{n}", n) for n in range(1, 8)]))
    tops = [float(bar.attrib["y"]) for bar in _bars(root)]
    height = float(_bars(root)[0].attrib["height"])
    assert all(later - earlier >= height for earlier, later in pairwise(tops))
    assert tops[-1] + height <= float(root.attrib["height"])
    smaller = ET.fromstring(charts.bar_chart_svg("按区县", [("区1", 1), ("区2", 2)]))
    assert float(smaller.attrib["height"]) < float(root.attrib["height"])
    assert root.attrib["viewBox"] == f"0 0 560 {root.attrib['height']}"


def test_zero_and_negative_values_draw_no_bar_but_show_their_value() -> None:
    zeros = ET.fromstring(charts.bar_chart_svg("全零", [("甲", 0), ("乙", 0)]))
    assert [float(bar.attrib["width"]) for bar in _bars(zeros)] == [0.0, 0.0]
    assert _texts(zeros)[1:] == ["甲", "0", "乙", "0"]
    mixed = ET.fromstring(charts.bar_chart_svg("有负数", [("甲", 4), ("乙", -3)]))
    widths = [float(bar.attrib["width"]) for bar in _bars(mixed)]
    assert widths[0] > 0 and widths[1] == 0.0
    assert "-3" in _texts(mixed)


def test_a_long_title_is_shortened_on_the_chart_and_whole_in_its_tooltip() -> None:
    title = "按区县统计的举报数量（" + "芙蓉区、天心区、岳麓区、" * 6 + "）"
    root = ET.fromstring(charts.bar_chart_svg(title, [("芙蓉区", 1)], width=300))
    shown = _texts(root)[0]
    assert shown.endswith("…") and title.startswith(shown[:-1])
    assert charts.text_width(shown, 15) <= 300 - 2 * 12
    assert root.findtext(f"{SVG}title") == title


def test_a_narrow_chart_keeps_room_for_its_bars() -> None:
    root = ET.fromstring(charts.bar_chart_svg("窄", [("清廉大厅监督组（市行政审批服务局）", 3)], width=100))
    bar = _bars(root)[0]
    assert float(bar.attrib["width"]) == 20  # the bar space never shrinks below 20 pixels


# --- sparklines ---------------------------------------------------------------------------------------------


def test_a_sparkline_draws_each_week_labels_first_last_and_largest() -> None:
    weeks = [(date(2026, 11, 2), 0), (date(2026, 11, 9), 4), (date(2026, 11, 16), 2)]
    root = ET.fromstring(charts.sparkline_svg(weeks, title="#1 <社保窗口>"))
    assert root.findtext(f"{SVG}title") == "#1 <社保窗口>"
    assert (root.attrib["width"], root.attrib["height"]) == ("240", "64")
    line = root.find(f"{SVG}polyline")
    assert line is not None
    # 4 px in from each side, 12 px at the top and 14 at the bottom: the week of 4 at the top, of 0 on the axis
    assert line.attrib["points"] == "4.0,50.0 120.0,12.0 236.0,31.0"
    assert [circle.findtext(f"{SVG}title") for circle in root.iter(f"{SVG}circle")] == [
        "2026-11-02: 0", "2026-11-09: 4", "2026-11-16: 2"]
    assert _texts(root) == ["11-02", "11-16", "4"]


def test_a_sparkline_of_quiet_weeks_stays_on_its_axis_and_one_without_weeks_is_empty() -> None:
    quiet = ET.fromstring(charts.sparkline_svg([(date(2026, 11, 2), 0), (date(2026, 11, 9), 0)], title="#2"))
    assert [circle.attrib["cy"] for circle in quiet.iter(f"{SVG}circle")] == ["50.0", "50.0"]
    assert _texts(quiet)[-1] == "0"
    empty = ET.fromstring(charts.sparkline_svg([], title="#3"))
    assert [element.tag for element in empty] == [f"{SVG}title", f"{SVG}line"]  # the axis alone
    single = ET.fromstring(charts.sparkline_svg([(date(2026, 11, 2), 3)], title="#4", width=100, height=40))
    assert [(c.attrib["cx"], c.attrib["cy"]) for c in single.iter(f"{SVG}circle")] == [("4.0", "12.0")]


# --- line charts --------------------------------------------------------------------------------------------


def _line_chart(series: list[charts.Series], labels: list[str] | None = None) -> ET.Element:
    labels = labels if labels is not None else [f"w{n}" for n in range(max(len(s[1]) for s in series))]
    return ET.fromstring(charts.line_chart_svg("每周案件", labels, series, y_title="件数", x_title="周"))


def _grid(root: ET.Element) -> dict[str, float]:
    """tick label → the y of its grid line."""
    lines = [float(line.attrib["y1"]) for line in root.iter(f"{SVG}line") if line.get("stroke") == "#e4e7eb"]
    ticks = [text.text or "" for text in root.iter(f"{SVG}text") if text.get("fill") == "#616e7c"
             and text.get("text-anchor") == "end"]
    return dict(zip(ticks, lines, strict=True))


@pytest.mark.parametrize(("largest", "ticks"), [
    (0.0, ["0", "1"]),
    (5.0, ["0", "1", "2", "3", "4", "5"]),
    (7.0, ["0", "2", "4", "6", "8"]),
    (23.0, ["0", "5", "10", "15", "20", "25"]),
    (120.0, ["0", "50", "100", "150"]),
])
def test_count_axes_have_a_few_round_ticks_reaching_the_largest_value(largest: float, ticks: list[str]) -> None:
    root = _line_chart([("收到", [0.0, largest])])
    assert list(_grid(root)) == ticks


def test_points_sit_on_their_values_grid_lines_and_under_their_week() -> None:
    root = _line_chart([("收到", [0.0, 4.0, 8.0]), ("办结", [2.0, None, 6.0])], ["11-02", "11-09", "11-16"])
    grid = _grid(root)
    assert list(grid) == ["0", "2", "4", "6", "8"]
    points = {circle.findtext(f"{SVG}title"): (float(circle.attrib["cx"]), float(circle.attrib["cy"]))
              for circle in root.iter(f"{SVG}circle")}
    assert [points[f"收到 {week}"][1] for week in ("11-02: 0", "11-09: 4", "11-16: 8")] == [
        grid["0"], grid["4"], grid["8"]]
    assert (points["办结 11-02: 2"][1], points["办结 11-16: 6"][1]) == (grid["2"], grid["6"])
    weeks = {text.text: float(text.attrib["x"]) for text in root.iter(f"{SVG}text")
             if text.text in ("11-02", "11-09", "11-16")}
    assert [points[f"收到 {week}: {n}"][0] for week, n in (("11-02", 0), ("11-09", 4), ("11-16", 8))] == [
        weeks["11-02"], weeks["11-09"], weeks["11-16"]]
    assert "办结 11-09" not in " ".join(str(title) for title in points)  # no point where the value is missing


def test_each_series_has_its_own_colour_and_a_legend_entry_and_the_fifth_reuses_the_first() -> None:
    names = ["收到", "办结", "按期", "满意", "其他"]
    root = _line_chart([(name, [1.0, 2.0]) for name in names])
    colours = [line.attrib["stroke"] for line in root.iter(f"{SVG}polyline")]
    assert colours == ["#2f6fb0", "#2e8540", "#c05621", "#6b46c1", "#2f6fb0"]
    legend = [(group.find(f"{SVG}rect"), group.findtext(f"{SVG}text")) for group in root.iter(f"{SVG}g")
              if group.find(f"{SVG}rect") is not None]
    assert [(rect.attrib["fill"] if rect is not None else None, name) for rect, name in legend] == list(
        zip(colours, names, strict=True))
    xs = [float(rect.attrib["x"]) for rect, _ in legend if rect is not None]
    assert xs == sorted(xs) and len(set(xs)) == 5  # side by side, not on top of each other


def test_many_weeks_are_labelled_every_few_weeks_so_the_labels_do_not_collide() -> None:
    def shown(count: int) -> list[str]:
        labels = [f"w{n:02d}" for n in range(count)]
        root = _line_chart([("收到", [1.0] * count)], labels)
        return [text for text in _texts(root) if text.startswith("w")]

    assert shown(12) == [f"w{n:02d}" for n in range(12)]
    assert shown(20) == [f"w{n:02d}" for n in range(0, 20, 2)]
    assert shown(30) == [f"w{n:02d}" for n in range(0, 30, 3)]


def test_the_axis_titles_and_series_names_are_escaped() -> None:
    markup = charts.line_chart_svg("<b>周</b>", ["<i>"], [("a&b", [1.0])], y_title="y<", x_title="\"x\"")
    root = ET.fromstring(markup)
    assert {"<b>周</b>", "<i>", "a&b", "y<", "\"x\""} <= set(_texts(root))
    assert "<b>" not in markup and "<i>" not in markup


def test_a_fractional_count_lies_within_the_axis() -> None:
    root = _line_chart([("平均", [0.0, 2.5])])
    top_tick = min(_grid(root).values())
    highest = min(float(circle.attrib["cy"]) for circle in root.iter(f"{SVG}circle"))
    assert highest >= top_tick
