"""The console's charts as standalone SVG markup (no script, no external references), drawn on the server: bar
charts of the statistics page, the loop page's weekly line charts and the hot issues' weekly sparklines. Every
text is XML-escaped; fonts include the common CJK families."""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from datetime import date
from html import escape

from console import texts

CJK_FONTS = ("'Noto Sans CJK SC','Source Han Sans SC','PingFang SC','Microsoft YaHei','WenQuanYi Micro Hei',"
             "'Noto Sans',Arial,sans-serif")
SERIES_COLOURS = ("#2f6fb0", "#2e8540", "#c05621", "#6b46c1")
Series = tuple[str, Sequence[float | None]]


def _svg_open(width: float, height: float, font_size: float, title: str) -> str:
    """The opening tag of a chart and its title (the tooltip of the whole chart and its accessible name)."""
    return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" '
            f'role="img" font-family="{CJK_FONTS}" font-size="{font_size}"><title>{xml_safe(title)}</title>')


def xml_safe(value: object) -> str:
    """Text safe in XML content and attribute values: escaped, without characters XML 1.0 forbids."""
    text = "".join(char for char in str(value)
                   if char in "\t\n\r" or (" " <= char <= "\ud7ff") or ("\ue000" <= char <= "\ufffd")
                   or char >= "\U00010000")
    return escape(text, quote=True)


def text_width(text: str, font_size: float) -> float:
    return sum(font_size if unicodedata.east_asian_width(char) in ("W", "F") else font_size * 0.6 for char in text)


def fit(text: str, max_width: float, font_size: float) -> str:
    if text_width(text, font_size) <= max_width:
        return text
    while text and text_width(text + "…", font_size) > max_width:
        text = text[:-1]
    return text + "…"


def bar_chart_svg(title: str, items: list[tuple[str, int]], *, width: int = 560) -> str:
    """A horizontal bar chart as standalone SVG markup (no script, no external references).

    Every text comes from `title` and `items` and is XML-escaped; long labels are shortened with "…" and
    shown in full in each bar's tooltip. Fonts include the common CJK families.
    """
    font_size, row_height, bar_height, top, margin = 13, 26, 18, 44, 12
    value_width = max((text_width(str(value), font_size) for _, value in items), default=0) + 10
    label_width = min(max((text_width(label, font_size) for label, _ in items), default=0) + 8, width * 0.42)
    label_width = max(label_width, 40)
    bar_left = margin + label_width + 6
    bar_space = max(width - bar_left - value_width - margin, 20)
    largest = max((value for _, value in items), default=0)
    height = top + max(len(items), 1) * row_height + margin
    parts = [
        _svg_open(width, height, font_size, title),
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{margin}" y="24" font-size="15" font-weight="bold" fill="#1f2933">'
        f"{xml_safe(fit(title, width - 2 * margin, 15))}</text>",
    ]
    if not items:
        empty = xml_safe(texts.joined("chart.no_data"))
        parts.append(f'<text x="{margin}" y="{top + 17}" fill="#616e7c">{empty}</text>')
    for index, (label, value) in enumerate(items):
        y = top + index * row_height
        middle = y + bar_height / 2
        bar = bar_space * max(value, 0) / largest if largest > 0 else 0
        parts.append(
            f"<g><title>{xml_safe(label)}: {xml_safe(value)}</title>"
            f'<text x="{bar_left - 6:.1f}" y="{middle:.1f}" text-anchor="end" dominant-baseline="central" '
            f'fill="#1f2933">{xml_safe(fit(label, label_width, font_size))}</text>'
            f'<rect x="{bar_left:.1f}" y="{y}" width="{bar:.1f}" height="{bar_height}" rx="2" fill="#2f6fb0"/>'
            f'<text x="{bar_left + bar + 5:.1f}" y="{middle:.1f}" dominant-baseline="central" '
            f'fill="#1f2933">{xml_safe(value)}</text></g>')
    parts.append("</svg>")
    return "\n".join(parts)


def sparkline_svg(points: list[tuple[date, int]], *, title: str, width: int = 240, height: int = 64) -> str:
    """A small weekly trend as standalone SVG: one point per week (Monday), joined by a line, the first and last
    week and the largest count labelled; the title and every week's count are tooltips."""
    font_size, left, right, top, bottom = 10, 4, 4, 12, 14
    largest = max((count for _, count in points), default=0)
    inner_width, inner_height = width - left - right, height - top - bottom
    step = inner_width / max(len(points) - 1, 1)

    def xy(index: int, count: int) -> tuple[float, float]:
        y = top + inner_height - (inner_height * count / largest if largest else 0)
        return left + index * step, y

    parts = [
        _svg_open(width, height, font_size, title),
        f'<line x1="{left}" y1="{top + inner_height}" x2="{width - right}" y2="{top + inner_height}" '
        'stroke="#cbd2d9"/>',
    ]
    if points:
        line = " ".join(f"{x:.1f},{y:.1f}" for x, y in (xy(i, count) for i, (_, count) in enumerate(points)))
        parts.append(f'<polyline points="{line}" fill="none" stroke="#2f6fb0" stroke-width="1.5"/>')
        for index, (week, count) in enumerate(points):
            x, y = xy(index, count)
            parts.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="2" fill="#2f6fb0">'
                         f"<title>{xml_safe(week.isoformat())}: {count}</title></circle>")
        parts.append(f'<text x="{left}" y="{height - 2}" fill="#616e7c">{points[0][0].strftime("%m-%d")}</text>')
        parts.append(f'<text x="{width - right}" y="{height - 2}" text-anchor="end" fill="#616e7c">'
                     f'{points[-1][0].strftime("%m-%d")}</text>')
        parts.append(f'<text x="{left}" y="{top - 2}" fill="#616e7c">{largest}</text>')
    parts.append("</svg>")
    return "\n".join(parts)


def _tick_values(largest: float, as_share: bool) -> list[float]:
    if as_share:
        return [0.0, 0.25, 0.5, 0.75, 1.0]
    step = 1
    while largest / step > 5:
        step = step * 5 // 2 if str(step)[0] == "2" else step * 2
    top = max(step, -(-math.ceil(largest) // step) * step)  # a tick at or above the largest value
    return [float(value) for value in range(0, top + 1, step)]


def line_chart_svg(title: str, x_labels: Sequence[str], series: Sequence[Series], *, y_title: str,
                   x_title: str, as_share: bool = False, width: int = 640, height: int = 300) -> str:
    """A line chart as standalone SVG markup (no script, no external references): one line per series over the
    x labels, a point at each value with its value in a tooltip, a gap where a value is missing (None), axes with
    their ticks and titles, and a legend. `as_share` draws values of 0–1 as percentages. Every text is escaped."""
    font_size, margin, top, bottom = 12, 12, 58, 58
    values = [value for _, points in series for value in points if value is not None]
    ticks = _tick_values(max(values, default=0.0), as_share)
    y_top = ticks[-1] or 1.0

    def shown(value: float) -> str:
        return f"{value * 100:.0f}%" if as_share else f"{value:g}"

    left = margin + 18 + max(text_width(shown(tick), font_size) for tick in ticks) + 6
    right = width - margin
    plot_bottom = height - bottom
    step = (right - left) / max(len(x_labels), 1)

    def x_of(index: int) -> float:
        return left + step * (index + 0.5)

    def y_of(value: float) -> float:
        return plot_bottom - (plot_bottom - top) * value / y_top

    parts = [
        _svg_open(width, height, font_size, title),
        f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>',
        f'<text x="{margin}" y="22" font-size="15" font-weight="bold" fill="#1f2933">'
        f"{xml_safe(fit(title, width - 2 * margin, 15))}</text>",
    ]
    legend_x = float(margin)
    for number, (name, _) in enumerate(series):
        colour = SERIES_COLOURS[number % len(SERIES_COLOURS)]
        parts.append(f'<g><rect x="{legend_x:.1f}" y="33" width="14" height="4" fill="{colour}"/>'
                     f'<text x="{legend_x + 18:.1f}" y="39" fill="#1f2933">{xml_safe(name)}</text></g>')
        legend_x += 18 + text_width(name, font_size) + 16
    for tick in ticks:
        y = y_of(tick)
        parts.append(f'<line x1="{left:.1f}" y1="{y:.1f}" x2="{right:.1f}" y2="{y:.1f}" stroke="#e4e7eb"/>'
                     f'<text x="{left - 6:.1f}" y="{y:.1f}" text-anchor="end" dominant-baseline="central" '
                     f'fill="#616e7c">{xml_safe(shown(tick))}</text>')
    parts.append(f'<line x1="{left:.1f}" y1="{plot_bottom}" x2="{right:.1f}" y2="{plot_bottom}" stroke="#616e7c"/>')
    every = max(1, -(-len(x_labels) * 46 // int(right - left)))  # one label per 46 pixels at most
    for index, label in enumerate(x_labels):
        if index % every == 0:
            parts.append(f'<text x="{x_of(index):.1f}" y="{plot_bottom + 16}" text-anchor="middle" '
                         f'fill="#616e7c">{xml_safe(label)}</text>')
    parts.append(f'<text x="{(left + right) / 2:.1f}" y="{height - 10}" text-anchor="middle" '
                 f'fill="#1f2933">{xml_safe(x_title)}</text>')
    middle = (top + plot_bottom) / 2
    parts.append(f'<text x="{margin + 4}" y="{middle:.1f}" text-anchor="middle" fill="#1f2933" '
                 f'transform="rotate(-90 {margin + 4} {middle:.1f})">{xml_safe(y_title)}</text>')
    if not values:
        parts.append(f'<text x="{(left + right) / 2:.1f}" y="{middle:.1f}" text-anchor="middle" fill="#616e7c">'
                     f'{xml_safe(texts.joined("chart.no_data"))}</text>')
    for number, (name, points) in enumerate(series):
        colour = SERIES_COLOURS[number % len(SERIES_COLOURS)]
        runs: list[list[tuple[float, float]]] = [[]]
        marks = []
        for index, value in enumerate(points):
            if value is None:
                runs.append([])
                continue
            x, y = x_of(index), y_of(value)
            runs[-1].append((x, y))
            marks.append(f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"><title>{xml_safe(name)} '
                         f'{xml_safe(x_labels[index])}: {xml_safe(shown(value))}</title></circle>')
        lines = [f'<polyline points="{" ".join(f"{x:.1f},{y:.1f}" for x, y in run)}" fill="none" '
                 f'stroke="{colour}" stroke-width="2"/>' for run in runs if len(run) > 1]
        parts.append(f'<g class="series">{"".join(lines)}{"".join(marks)}</g>')
    parts.append("</svg>")
    return "\n".join(parts)
