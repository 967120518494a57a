"""The dashboard's fast number and table formatting writes exactly what the template filters
wrote (issue 13: the same page for less CPU)."""

from __future__ import annotations

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
