"""The dashboard's fast number and table formatting writes exactly what the template filters
wrote (issue 13: the same page for less CPU)."""

from __future__ import annotations

import itertools
import re
from datetime import date, timedelta

import pytest
from django.template import Context, Template
from django.template.defaultfilters import floatformat
from django.utils import translation

from allocations.services.usage_charts import Day, day_rows
from portal import charts

VALUES = [0.0, -0.0, 0.1, 0.05, 1.25, 2.675, 3.0, 999.95, 1234.5, 1234567.891, 12.3456, -4.2, 1e-7, 6465.5]

# The template loop that day_rows replaced, verbatim.
OLD_LOOP = Template(
    '{% for d in days %}<tr><th scope="row">{{ d.day|date:"SHORT_DATE_FORMAT" }}</th>'
    '<td>{{ d.gpu_hours|floatformat:"1g" }}</td><td>{% if d.utilization is None %}–{% else %}'
    '{{ d.utilization|floatformat:"1g" }}%{% endif %}</td><td>{{ d.energy_kwh|floatformat:"2g" }} kWh</td>'
    "</tr>{% endfor %}"
)


@pytest.mark.parametrize("language", ["ko", "en"])
def test_the_fast_formatter_writes_what_the_floatformat_filter_writes(language):
    with translation.override(language):
        for decimals in (0, 1, 2):
            fmt = charts.floatformat_formatter(decimals)
            for value in VALUES + [round(v, decimals) for v in VALUES]:
                assert fmt(value) == floatformat(value, f"{decimals}g"), (value, decimals)


@pytest.mark.parametrize("language", ["ko", "en"])
def test_the_numbers_per_day_table_is_the_html_the_template_loop_wrote(language):
    first = date(2026, 11, 1)
    days = [
        Day(
            first + timedelta(days=n),
            round(n * 1.37, 1),
            None if n % 4 == 0 else round(n * 3.3, 1),
            round(n * 0.456, 2),
        )
        for n in range(30)
    ]
    days.append(Day(first + timedelta(days=30), 1234.5, 99.95, 12345.678))  # not rounded: the filter's own rounding
    with translation.override(language):
        short = {d.day: Template('{{ d|date:"SHORT_DATE_FORMAT" }}').render(Context({"d": d.day})) for d in days}
        assert day_rows(days, short) == OLD_LOOP.render(Context({"days": days}))


def test_num_formatter_writes_what_num_writes():
    with translation.override("ko"):
        for decimals in (0, 1, 2):
            fmt = charts.num_formatter(decimals)
            for value in [*VALUES, None, 0, 7, 1234567]:
                assert fmt(value) == charts.num(value, decimals)


def _texts(svg: str) -> list[tuple[float, float, str]]:
    found = re.findall(r'<text x="([\d.]+)" y="([\d.]+)"[^>]*>(?:<title>[^<]*</title>)?([^<]*)</text>', svg)
    return [(float(x), float(y), t) for x, y, t in found]


@pytest.mark.parametrize("language", ["en", "ko"])
def test_a_stacked_bar_charts_legend_entries_never_overlap_and_stay_inside_the_chart(language):
    """The fleet page's legend drew "assigned, in use" under "assigned, idle" (a fixed 95 px per
    entry); Korean names are wider still, and a long legend goes on to a second line."""
    names = {"en": ["assigned, in use", "assigned, idle", "free", "unavailable"],
             "ko": ["배정됨, 사용 중", "배정됨, 유휴 상태로 알림 받음", "여유", "사용 불가"]}[language]  # fmt: skip
    segments = [charts.Segment(name, 2, "#000") for name in names]
    svg = str(charts.stacked_bars(chart_id="s", rows=[("H100-80GB", segments)], title="t", desc="d"))
    legend = [(x, y, t) for x, y, t in _texts(svg) if t in names]
    assert [t for _x, _y, t in legend] == names
    per_char = 10 if language == "ko" else 6
    for (x, y, text), (next_x, next_y, _next) in itertools.pairwise(legend):
        assert next_y > y or next_x >= x + len(text) * per_char, (text, x, next_x)
    width = float(re.search(r'viewBox="0 0 ([\d.]+)', svg).group(1))
    assert width == 480
    assert all(x + len(text) * per_char <= width for x, _y, text in legend), legend


def test_a_paired_bar_charts_figures_fit_inside_the_chart():
    """The review page's "1,006 / 2,000" was cut to "1,006 / 2,00" at the chart's right edge."""
    pairs = [charts.Pair("#1 Korean foundation model pre-training", 2000, 1006.4)]
    svg = str(charts.paired_bars(chart_id="p", pairs=pairs, title="t", desc="d"))
    width = float(re.search(r'viewBox="0 0 ([\d.]+)', svg).group(1))
    x, figure = next((x, t) for x, _y, t in _texts(svg) if "/" in t)
    assert figure == "1,006 / 2,000"
    assert x + len(figure) * 6.2 <= width


@pytest.mark.parametrize(
    "title", ["한국어 대규모 언어 모델 사전학습 (데모)", "Korean large language model pre-training at scale"]
)
def test_a_paired_bar_charts_labels_end_before_the_bars(title):
    """Labels were cut at 24 characters: a Korean title (twice as wide) ran under the bars."""
    svg = str(charts.paired_bars(chart_id="p", pairs=[charts.Pair(f"#2 {title}", 100, 50)], title="t", desc="d"))
    label = next(t for x, _y, t in _texts(svg) if x == 0)
    bars_start = float(re.search(r'<rect x="([\d.]+)"', svg).group(1))
    per_char = {True: 10.5, False: 5.5}
    assert sum(per_char[ord(c) > 0x1100] for c in label) <= bars_start, label
    assert label.startswith("#2 ") and label.endswith("…")


def axis_top(svg: str) -> str:
    return re.search(r'<text x="0" y="14"[^>]*>([^<]*)</text>', svg).group(1)


@pytest.mark.parametrize("language", ["ko", "en"])
@pytest.mark.parametrize(
    "largest, shown",
    [
        (1.41, "1.5 kWh"),
        (0.37, "0.37 kWh"),
        (0.004, "0.004 kWh"),
        (9.96, "10 kWh"),
        (0.0041, "0.005 kWh"),
        (1.4, "1.4 kWh"),
        (1234.5, "1,235 kWh"),
        (123.4, "124 kWh"),
    ],
)
def test_the_energy_charts_axis_top_is_never_below_the_largest_bar(language, largest, shown):
    """The day of 1.41 kWh was drawn under an axis reading "1 kWh": the top is now rounded up, to
    enough decimals to say something, and the bars are drawn against that rounded top."""
    points = [charts.Point("a", largest / 2), charts.Point("b", largest)]
    with translation.override(language):
        svg = charts.columns(chart_id="e", points=points, top=largest, title="t", desc="d", unit=" kWh")
    assert axis_top(svg) == shown
    axis = float(shown.split()[0].replace(",", ""))
    assert axis >= largest
    heights = [float(h) for h in re.findall(r'<rect [^>]*height="([^"]*)"', svg)]
    assert heights[1] == pytest.approx(96 * largest / axis, abs=0.1)  # 96: the plot's height


def test_a_percentage_charts_axis_top_stays_a_whole_hundred():
    svg = charts.columns(chart_id="u", points=[charts.Point("a", 40.0)], top=100, title="t", desc="d", unit="%")
    assert axis_top(svg) == "100%"
