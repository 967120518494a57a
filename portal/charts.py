"""Charts as server-rendered SVG: numbers in, markup out, no JavaScript and no inline style.

The strict CSP forbids inline scripts and `style` attributes, so every chart is plain SVG with
presentation attributes (`fill`, `width`…), which are not CSS and pass the policy. Each chart is
an image to assistive technology (`role="img"` with a <title> and a <desc> that says what it
shows in words); the templates put the same numbers in a table beside it. Every value here is
already computed: these functions never query the database.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date

from django.template.defaultfilters import floatformat
from django.utils import numberformat
from django.utils.formats import date_format, get_format, number_format
from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe
from django.utils.translation import get_language, gettext

ACCENT = "#0b4f9c"
RECENT = "#1a7f37"
TRACK = "#dde2e8"
USED = "#9a6700"
TEXT = "#1b1f24"


def num(value: float | int | None, decimals: int = 0) -> str:
    """A number in the reader's locale, grouped by thousands."""
    if value is None:
        return "–"
    return number_format(value, decimal_pos=decimals, force_grouping=True)


def num_formatter(decimals: int = 0) -> Callable[[float | int | None], str]:
    """`num` for many values: the locale's separators and grouping are read once, not three
    `get_format` look-ups per value (most of a 30-bar chart's CPU on the dashboard, issue 13).
    The same text as `num`: Django's own `numberformat.format` with the same arguments."""
    lang = get_language()
    decimal_sep = get_format("DECIMAL_SEPARATOR", lang, use_l10n=True)
    grouping = get_format("NUMBER_GROUPING", lang, use_l10n=True)
    thousand_sep = get_format("THOUSAND_SEPARATOR", lang, use_l10n=True)

    def fmt(value: float | int | None) -> str:
        if value is None:
            return "–"
        return numberformat.format(
            value, decimal_sep, decimals, grouping, thousand_sep, force_grouping=True, use_l10n=True
        )

    return fmt


def floatformat_formatter(decimals: int) -> Callable[[float], str]:
    """The template filter `floatformat:"<decimals>g"` for many floats: a value with no more
    decimals than shown (rounded already) is the same text as `num_formatter`'s; any other value
    goes through the filter itself, so the text never differs from the template's."""
    fast = num_formatter(decimals)
    arg = f"{decimals}g"

    def fmt(value: float) -> str:
        text = repr(value)
        if isinstance(value, float) and "e" not in text and "n" not in text and len(text.partition(".")[2]) <= decimals:
            return fast(value + 0.0)  # + 0.0: no "-0.0"
        return floatformat(value, arg)

    return fmt


def length(value: float | int | None) -> float:
    """A value drawn as a length: a missing, negative or non-finite number (NaN from a sensor,
    a negative correction) is drawn as nothing, never as an invalid SVG width."""
    if value is None or not math.isfinite(value) or value < 0:
        return 0.0
    return float(value)


def axis_top(top: float) -> tuple[float, str]:
    """The top of a value axis, rounded UP to enough decimals to say something (none from 10, one
    under 10, two under 1, more below 0.01), and its text: the axis never reads less than its
    largest bar (a day of 1.41 kWh once stood under "1 kWh"), and the bars are drawn against the
    value it reads. A whole number is written without decimals ("100", "10")."""
    decimals = 0 if top >= 10 else 1 if top >= 1 else max(2, -math.floor(math.log10(top)))
    scale = 10**decimals
    rounded = math.ceil(round(top * scale, 6)) / scale
    return rounded, num(rounded, 0 if rounded == int(rounded) else decimals)


def day_label(day: date) -> str:
    return date_format(day, "MONTH_DAY_FORMAT")


def text_width(text: str, size: int = 11) -> float:
    """About how wide `text` is drawn in the charts' sans-serif at `size` px: Hangul and other
    wide characters about a full em, the rest about 0.56 em (enough to keep labels apart)."""
    return sum(size if unicodedata.east_asian_width(c) in "WF" else size * 0.56 for c in text)


def fit(text: str, width: float, size: int = 11) -> str:
    """`text` cut (with "…") to about `width` px: Hangul is twice as wide as Latin letters, so a
    cut by characters ran Korean titles into the bars beside them."""
    if text_width(text, size) <= width:
        return text
    while text and text_width(text + "…", size) > width:
        text = text[:-1]
    return text.rstrip() + "…"


def _frame(chart_id: str, width: int, height: int, title: str, desc: str, body: SafeString) -> SafeString:
    return format_html(
        '<svg class="chart" id="{id}" role="img" aria-labelledby="{id}-t {id}-d" viewBox="0 0 {w} {h}" '
        'width="{w}" height="{h}" preserveAspectRatio="xMinYMin meet" xmlns="http://www.w3.org/2000/svg">'
        '<title id="{id}-t">{title}</title><desc id="{id}-d">{desc}</desc>{body}</svg>',
        id=chart_id,
        w=width,
        h=height,
        title=title,
        desc=desc,
        body=body,
    )


def gauge(*, chart_id: str, used: float, total: float, title: str, desc: str) -> SafeString:
    """A horizontal bar: the part of `total` used, the rest left. Beyond the total it is full."""
    width, height, bar = 320, 34, 18
    used, total = length(used), length(total)
    share = min(used / total, 1.0) if total else 0.0
    body = format_html(
        '<rect x="0" y="0" width="{w}" height="{b}" rx="3" fill="{track}"/>'
        '<rect x="0" y="0" width="{used_w}" height="{b}" rx="3" fill="{accent}"/>'
        '<text x="0" y="{ty}" font-size="12" fill="{text}">{label}</text>',
        w=width,
        b=bar,
        track=TRACK,
        used_w=f"{width * share:.1f}",
        accent=ACCENT,
        ty=bar + 14,
        text=TEXT,
        label=f"{num(100 * share, 0)}%",
    )
    return _frame(chart_id, width, height, title, desc, body)


@dataclass(frozen=True)
class Point:
    label: str
    value: float | None
    highlight: bool = False


def columns(*, chart_id: str, points: Sequence[Point], top: float, title: str, desc: str, unit: str = "") -> SafeString:
    """Vertical bars over time, one per point, from 0 to `top` (a missing value is no bar).
    Highlighted points (the last 7 of 30 days) have their own colour; the first and last point
    are labelled on the axis and the top value on the left."""
    width, height, left, bottom = 320, 120, 34, 18
    plot_w, plot_h = width - left, height - bottom - 6
    top, top_text = axis_top(length(top) or 1)
    step = plot_w / max(len(points), 1)
    value_text = num_formatter(1)
    safe_unit = escape(unit)
    # Coordinates and colours are numbers and constants; only the label and the unit are text
    # to escape. One f-string per bar instead of format_html escaping seven arguments each.
    bars = mark_safe(  # noqa: S308 - every text value is escaped above; the rest are numbers
        "".join(
            f'<rect x="{left + i * step + step * 0.15:.1f}" y="{6 + plot_h - h:.1f}" width="{step * 0.7:.1f}" '
            f'height="{h:.1f}" fill="{RECENT if p.highlight else ACCENT}"><title>{escape(p.label)}: '
            f"{escape(value_text(p.value))}{safe_unit}</title></rect>"
            for i, p in enumerate(points)
            if p.value is not None and math.isfinite(p.value)
            for h in [plot_h * min(length(p.value) / top, 1.0)]
        )
    )
    axis = format_html(
        '<line x1="{l}" y1="{base}" x2="{w}" y2="{base}" stroke="{text}" stroke-width="1"/>'
        '<text x="0" y="14" font-size="11" fill="{text}">{top}{unit}</text>'
        '<text x="0" y="{base}" font-size="11" fill="{text}">0</text>'
        '<text x="{l}" y="{ly}" font-size="11" fill="{text}">{first}</text>'
        '<text x="{w}" y="{ly}" font-size="11" fill="{text}" text-anchor="end">{last}</text>',
        l=left,
        w=width,
        base=6 + plot_h,
        ly=height - 2,
        text=TEXT,
        top=top_text,
        unit=unit,
        first=points[0].label if points else "",
        last=points[-1].label if points else "",
    )
    return _frame(chart_id, width, height, title, desc, format_html("{}{}", axis, bars))


@dataclass(frozen=True)
class Pair:
    label: str
    awarded: float
    used: float


def paired_bars(*, chart_id: str, pairs: Sequence[Pair], title: str, desc: str, unit: str = "") -> SafeString:
    """Horizontal bars, two per row: what was awarded (light) and what was used (dark), on one
    scale, so a row whose dark bar falls short of its light one was under-used."""
    width, label_w, row_h = 480, 150, 30
    height = max(len(pairs), 1) * row_h + 20
    pairs = [Pair(p.label, length(p.awarded), length(p.used)) for p in pairs]
    top = max([max(p.awarded, p.used) for p in pairs] or [1]) or 1
    whole = num_formatter(0)
    # Room on the right for the longest "used / awarded" figure (it was cut off at "2,00").
    figures = max((text_width(f"{whole(p.used)} / {whole(p.awarded)}{unit}") for p in pairs), default=0)
    plot_w = width - label_w - max(70, int(figures) + 10)
    safe_unit = escape(unit)
    # Only the labels are text to escape; the rest are numbers and constants (one f-string per
    # row instead of format_html escaping eighteen arguments: the review pages draw every grant).
    rows = mark_safe(  # noqa: S308 - every text value is escaped here
        "".join(
            f'<text x="0" y="{y + 14}" font-size="11" fill="{TEXT}"><title>{escape(p.label)}</title>'
            f"{escape(fit(p.label, label_w - 8))}</text>"
            f'<rect x="{label_w}" y="{y + 2}" width="{plot_w * p.awarded / top:.1f}" height="10" fill="{TRACK}"/>'
            f'<rect x="{label_w}" y="{y + 13}" width="{plot_w * min(p.used, top) / top:.1f}" height="10" '
            f'fill="{USED}"/><text x="{label_w + plot_w + 4}" y="{y + 14}" font-size="11" fill="{TEXT}">'
            f"{escape(whole(p.used))} / {escape(whole(p.awarded))}{safe_unit}</text>"
            for i, p in enumerate(pairs)
            for y in [i * row_h]
        )
    )
    legend = format_html(
        '<rect x="{x}" y="{y}" width="10" height="10" fill="{track}"/>'
        '<text x="{x1}" y="{ty}" font-size="11" fill="{text}">{awarded}</text>'
        '<rect x="{x2}" y="{y}" width="10" height="10" fill="{used}"/>'
        '<text x="{x3}" y="{ty}" font-size="11" fill="{text}">{used_label}</text>',
        x=label_w,
        y=height - 12,
        ty=height - 3,
        x1=label_w + 14,
        x2=label_w + 120,
        x3=label_w + 134,
        track=TRACK,
        used=USED,
        text=TEXT,
        awarded=gettext("awarded"),
        used_label=gettext("used"),
    )
    return _frame(chart_id, width, height, title, desc, format_html("{}{}", rows, legend))


def awarded_vs_used(rows: Sequence[dict], *, chart_id: str, title: str, desc: str) -> SafeString:
    """`paired_bars` of grants' use (rows of `allocations.services.usage.grants_with_usage`):
    each grant's awarded GPU-hours against those used, labelled by its number and title."""
    pairs = [
        Pair(f"#{r['grant'].pk} {r['grant'].application.title}".strip(), r["gpu_hours_subsidy"], r["gpu_hours_used"])
        for r in rows
    ]
    return paired_bars(chart_id=chart_id, pairs=pairs, title=title, desc=desc)


@dataclass(frozen=True)
class Segment:
    name: str
    value: int
    colour: str


def stacked_bars(*, chart_id: str, rows: Sequence[tuple[str, Sequence[Segment]]], title: str, desc: str) -> SafeString:
    """One horizontal bar per row, split into segments (for example a GPU model's GPUs:
    assigned, idle, free, unavailable), each row scaled to the largest row's total."""
    width, label_w, row_h = 480, 110, 26
    plot_w = width - label_w - 60
    legend = list(rows[0][1]) if rows else []  # every row has the same segments
    # Each legend entry after the previous one's text (long names, Korean too, never overlap),
    # on a new line when the chart's width is reached.
    places, x, line = [], label_w, 0
    for s in legend:
        entry = 14 + text_width(str(s.name)) + 12
        if x > label_w and x + entry > width:
            x, line = label_w, line + 1
        places.append((x, line))
        x += entry
    height = max(len(rows), 1) * row_h + 24 + 14 * line
    top = max([sum(s.value for s in segs) for _label, segs in rows] or [1]) or 1
    parts = []
    for i, (label, segs) in enumerate(rows):
        y, x = i * row_h, float(label_w)
        parts.append(format_html('<text x="0" y="{}" font-size="11" fill="{}">{}</text>', y + 14, TEXT, label))
        for s in segs:
            w = plot_w * s.value / top
            if w:
                parts.append(
                    format_html(
                        '<rect x="{}" y="{}" width="{}" height="14" fill="{}"><title>{}: {}</title></rect>',
                        f"{x:.1f}",
                        y + 3,
                        f"{w:.1f}",
                        s.colour,
                        s.name,
                        num(s.value),
                    )
                )
            x += w
        parts.append(
            format_html(
                '<text x="{}" y="{}" font-size="11" fill="{}">{}</text>',
                f"{x + 4:.1f}",
                y + 14,
                TEXT,
                num(sum(s.value for s in segs)),
            )
        )
    for s, (x, line) in zip(legend, places, strict=True):
        y = height - 12 - 14 * (places[-1][1] - line)
        parts.append(
            format_html(
                '<rect x="{}" y="{}" width="10" height="10" fill="{}"/>'
                '<text x="{}" y="{}" font-size="11" fill="{}">{}</text>',
                f"{x:.1f}",
                y,
                s.colour,
                f"{x + 14:.1f}",
                y + 9,
                TEXT,
                s.name,
            )
        )
    return _frame(chart_id, width, height, title, desc, format_html("{}" * len(parts), *parts))
