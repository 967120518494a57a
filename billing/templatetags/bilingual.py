"""Documents every reader gets the same (the invoice and credit note PDFs, rendered once and
stored): `{% both %}…{% endboth %}` renders its content in Korean and then in English, side by
side; `won`, `gpu_time` and `brn` print amounts, GPU time and business numbers the same way in both
languages."""

from __future__ import annotations

from django import template
from django.utils import translation
from django.utils.html import format_html

from portal.templatetags.humanize_krw import won_sign

register = template.Library()


class BothNode(template.Node):
    """Its content in Korean, then in English (marked `lang`): a label of a stored document reads
    in both languages whoever renders it and whatever language is active."""

    child_nodelists = ("nodelist",)

    def __init__(self, nodelist: template.NodeList) -> None:
        self.nodelist = nodelist

    def render(self, context) -> str:
        with translation.override("ko"):
            korean = self.nodelist.render(context)
        with translation.override("en"):
            english = self.nodelist.render(context)
        return format_html('<span class="ko" lang="ko">{}</span><span class="en" lang="en">{}</span>', korean, english)


@register.tag("both")
def do_both(parser, token) -> BothNode:
    nodelist = parser.parse(("endboth",))
    parser.delete_first_token()
    return BothNode(nodelist)


@register.filter
def won(value: int | None) -> str:
    """Whole won with the won sign and thousands separators, in any language: ₩6,600, -₩5,000."""
    return "" if value is None else won_sign(int(value))


@register.filter
def gpu_time(minutes: int | None) -> str:
    """GPU time as hours and minutes, exactly (amounts are priced per minute): 0:05, 1,234:30.
    Five minutes at ₩3,600 per GPU-hour is 0:05 times ₩3,600 = ₩300, where 0.08 hours would not
    multiply to the amount."""
    if minutes is None:
        return ""
    hours, rest = divmod(int(minutes), 60)
    return f"{hours:,}:{rest:02d}"


@register.filter
def brn(value: str | None) -> str:
    """A business registration number as printed: 120-81-47521 (an en dash when there is none)."""
    if not value:
        return "–"
    return f"{value[:3]}-{value[3:5]}-{value[5:]}"
